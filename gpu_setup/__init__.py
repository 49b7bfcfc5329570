"""GPU checks (`fabula doctor`), model downloads (`fabula models pull`) and the plan of which service runs on
which GPU, for one, two or three GPUs. Importing it loads neither torch nor a model."""
