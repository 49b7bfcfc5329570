# One image for every Fabula container: the caption, illustrate, llm and narrate services, the workers and the web app.
# Build:  docker compose build        (or: docker build -t fabula .)
# Extras: --build-arg EXTRA_PIP=bitsandbytes   for the 4-bit LLaVA a single 24 GB GPU needs
#         --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126   for a torch built for another CUDA
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""
ARG EXTRA_PIP=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models/huggingface \
    FABULA_CACHE_DIR=/models/fabula \
    FABULA_DATA_DIR=/data \
    FABULA_LOG_FORMAT=json \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"

# Fonts with TrueType outlines for every script a book can be written in, poppler for PDF checks, espeak-ng
# (the offline voice) and ffmpeg (page audio, the audiobook).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        fonts-dejavu-core fonts-noto-core fonts-nanum fonts-ipafont-gothic fonts-wqy-zenhei poppler-utils espeak-ng ffmpeg \
        build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# torch (and torchvision, which the print upscaler needs) first, in its own layer: the biggest download, and changes least often.
# The default PyPI wheel for Linux x86_64 is built with CUDA.
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch torchvision

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY webapp ./webapp
COPY gpu_setup ./gpu_setup
RUN pip install . && if [ -n "$EXTRA_PIP" ]; then pip install $EXTRA_PIP; fi

RUN useradd --create-home --uid 1000 fabula \
    && mkdir -p /models /data \
    && chown fabula:fabula /models /data
USER fabula

EXPOSE 7860 8101 8102 8103 8104 8110
ENTRYPOINT ["fabula"]
CMD ["serve", "web", "--host", "0.0.0.0", "--port", "7860"]
