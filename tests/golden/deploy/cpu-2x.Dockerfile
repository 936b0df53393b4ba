# syntax=docker/dockerfile:1
# infer deploy docker -p cpu-2x: one image that runs 'infer serve' on this profile.
# Build context: this folder (profile.toml). infer's own source comes from the named
# context 'infer-src' (compose.yaml sets it; by hand:
#   docker build --build-context infer-src=PATH .).
# The proxy-only image for 'infer deploy helm' is this file with a slim base and no engine:
#   docker build --build-context infer-src=PATH --build-arg BASE_IMAGE=python:3.12-slim \
#     --build-arg ENGINE_PACKAGES= -t infer:0.1.0 .
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
ARG ENGINE_PACKAGES=""
COPY --from=infer-src pyproject.toml /opt/infer-src/pyproject.toml
COPY --from=infer-src README.md /opt/infer-src/README.md
COPY --from=infer-src LICENSE /opt/infer-src/LICENSE
COPY --from=infer-src infer_cli /opt/infer-src/infer_cli
COPY --from=infer-src profiles /opt/infer-src/profiles
RUN python3 -m pip install --no-cache-dir /opt/infer-src ${ENGINE_PACKAGES}
COPY profile.toml /etc/infer/profile.toml
ENV INFER_HOME=/var/lib/infer HF_HOME=/var/lib/infer/huggingface NO_COLOR=1 PYTHONUNBUFFERED=1
VOLUME /var/lib/infer
EXPOSE 8080
ENTRYPOINT []
CMD ["infer", "serve", "--profile", "/etc/infer/profile.toml", "--host", "0.0.0.0", "--port", "8080"]
