# The cluster's image: Ray's GPU image with this project's dependencies baked in, at the exact
# versions of constraints.txt, so a new spot worker starts work without pip-installing GBs.
# The project's code is not in it: each job ships it with `ray job submit --working-dir .`
# (README), so the image is rebuilt only when the dependencies change.
#
#   make push IMAGE_REPO=ghcr.io/OWNER/styleid-distill   # docker build + push; the tag is a
#                                                         # hash of this file and the pins
# then set cluster.yaml's docker.image to the pushed name (`make print-image` prints it).
#
# Ray and Python here must match the pins and the driver: tests/test_cluster_config.py checks
# this line against constraints.txt, and the list below against pyproject.toml.
FROM rayproject/ray:2.60.0-py311-gpu

COPY constraints.txt /tmp/constraints.txt

# pyproject.toml's [project] dependencies (the names; the pins decide the versions), boto3
# for the head's autoscaler to launch EC2 nodes, and the `gcs` extra (gcsfs) for gs:// runs.
RUN pip install --no-cache-dir -c /tmp/constraints.txt \
        "ray[default,data,train,serve]" \
        python-multipart \
        torch \
        torchvision \
        diffusers \
        accelerate \
        transformers \
        safetensors \
        pillow \
        fsspec \
        s3fs \
        tqdm \
        numpy \
        pyyaml \
        torchmetrics \
        pytorch-fid \
        matplotlib \
        tensorboard \
        opencv-python-headless \
        tyro \
        huggingface-hub \
        pyarrow \
        boto3 \
        gcsfs
