# syntax=docker/dockerfile:1
# edgetune: one image for the API and the worker (different commands, see docker-compose.yml).
#
#   docker build -t edgetune .                      # CPU: wasm backend + the OpenBLAS matmul addon
#   docker build -t edgetune:gpu --build-arg GPU=1 .  # adds @tensorflow/tfjs-node-gpu (CUDA 11.8 / cuDNN 8 runtime)
#
#   docker run --rm edgetune node scripts/db-migrate.mjs deploy   # migrations (the compose API runs them first)
#   docker run edgetune                                           # the API (default command), port 8080
#   docker run edgetune node apps/worker/dist/main.js             # a worker
#
# The engine picks tfjs-node-gpu up by itself when it is installed (backend order tfjs-node-gpu > tfjs-node >
# wasm; EDGETUNE_BACKEND forces one). Base models live in /models (EDGETUNE_MODELS_DIR); the image carries the
# repository's models/ there, so a fresh named volume on /models starts with the default model.

ARG NODE_VERSION=20
# GPU=1: install @tensorflow/tfjs-node-gpu and run on the CUDA runtime image (needs the NVIDIA container toolkit).
ARG GPU=0

# ------------------------------------------------------------------------------------------------ build
FROM node:${NODE_VERSION}-bookworm-slim AS build
ARG GPU
ARG TFJS_VERSION=4.22.0
# gcc + libopenblas-dev: the engine's optional native addon (packages/engine/scripts/build-native.mjs);
# python3/make/g++ for any dependency that has to compile.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 libopenblas-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
# `npm ci` runs `prepare`: the OpenBLAS addon, the Prisma client, `tsc -b`, the dashboard bundle (apps/api/dist/dashboard).
RUN npm ci --no-audit --no-fund \
 && test -f packages/engine/native/build/blas_addon.node \
 && test -f apps/api/dist/dashboard/app.js \
 && npm prune --omit=dev --no-audit --no-fund \
 && if [ "$GPU" = "1" ]; then npm install --no-save --omit=dev --no-audit --no-fund "@tensorflow/tfjs-node-gpu@${TFJS_VERSION}"; fi \
 && mkdir -p models \
 && npm cache clean --force

# ------------------------------------------------------------------------------------- runtime bases
FROM node:${NODE_VERSION}-bookworm-slim AS runtime-base-0

FROM nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04 AS runtime-base-1
COPY --from=build /usr/local/bin/node /usr/local/bin/node
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# --------------------------------------------------------------------------------------------- runtime
FROM runtime-base-${GPU} AS runtime
ARG GPU
# libopenblas0 + libgomp1: what the native addon links against; tini reaps the worker's sandboxed processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0 libgomp1 tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 edgetune \
 && useradd --system --uid 10001 --gid edgetune --home-dir /app --shell /usr/sbin/nologin edgetune \
 && mkdir -p /models /var/lib/edgetune/work \
 && chown -R edgetune:edgetune /models /var/lib/edgetune
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/packages/core/package.json ./packages/core/package.json
COPY --from=build /app/packages/core/dist ./packages/core/dist
COPY --from=build /app/packages/core/src/advisor/rules.json ./packages/core/src/advisor/rules.json
COPY --from=build /app/packages/store/package.json ./packages/store/package.json
COPY --from=build /app/packages/store/dist ./packages/store/dist
COPY --from=build /app/packages/engine/package.json ./packages/engine/package.json
COPY --from=build /app/packages/engine/dist ./packages/engine/dist
COPY --from=build /app/packages/engine/native/build ./packages/engine/native/build
COPY --from=build /app/packages/engine/vendor ./packages/engine/vendor
COPY --from=build /app/apps/api/package.json ./apps/api/package.json
COPY --from=build /app/apps/api/dist ./apps/api/dist
COPY --from=build /app/apps/worker/package.json ./apps/worker/package.json
COPY --from=build /app/apps/worker/dist ./apps/worker/dist
COPY --from=build /app/scripts ./scripts
COPY --from=build /app/prisma ./prisma
COPY --from=build --chown=edgetune:edgetune /app/models /models

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATABASE_URL=postgresql://postgres@postgres:5432/edgetune \
    REDIS_URL=redis://redis:6379 \
    EDGETUNE_MODELS_DIR=/models \
    EDGETUNE_WORK_DIR=/var/lib/edgetune/work
USER edgetune
EXPOSE 8080
VOLUME ["/models"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["tini", "--"]
CMD ["node", "apps/api/dist/main.js"]
