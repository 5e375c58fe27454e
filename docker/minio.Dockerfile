# MinIO publishes source only now, so the image is built the way scripts/tools.sh builds it: go install of the
# newest commit the Go module proxy serves (see README.md, "MinIO version").
FROM golang:1.25-bookworm AS build
RUN GOBIN=/out go install github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/minio /usr/local/bin/minio
EXPOSE 9000 9001
ENTRYPOINT ["minio"]
