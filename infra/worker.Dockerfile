# The flow's worker: daggerlm and its pinned dependencies (CUDA torch comes from the base image).
FROM pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
RUN apt-get update -qq && apt-get install -y -qq git util-linux && rm -rf /var/lib/apt/lists/*
WORKDIR /workspace
COPY . /workspace
RUN pip install --no-cache-dir -e .
