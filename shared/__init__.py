"""Code shared by Fabula's services and web app: wire schemas, settings, errors, image I/O, HTTP plumbing."""
