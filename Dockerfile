# The service's own processes (ingest, worker, api, mailbox, init) from one image, the `service` target;
# docker-compose.yml picks the command. The `mailserver` target adds Debian's Dovecot to it, for the dovecot service
# (temporary mailboxes). The `temporal` target is the Temporal server, built as scripts/tools.sh builds it.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim AS service
ENV NODE_ENV=production MXF_RUNBOOKS=/app/runbooks
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY migrations ./migrations
COPY runbooks ./runbooks
USER node
CMD ["node", "dist/api/main.js"]

# Dovecot for temporary mailboxes, configured at start by src/mailbox/dovecot-main.ts from the environment. It starts
# as root, as Dovecot must, and runs its mail processes as Debian's dovecot account.
FROM node:20-bookworm-slim AS mailserver
RUN apt-get update && apt-get install -y --no-install-recommends \
      dovecot-imapd dovecot-lmtpd dovecot-submissiond dovecot-pgsql && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
CMD ["node", "dist/mailbox/dovecot-main.js"]

# The Temporal server, its SQL tool and its Web UI server, built from the same Go modules at the same versions as
# scripts/tools.sh builds them for `npm run cluster` (compose passes the versions; test/temporal-config.test.ts
# checks that they are tools.sh's), configured by the same files under temporal/. The Go toolchain is this image's,
# not necessarily the machine's: the module versions, not the compiler, fix what the server does.
FROM golang:1.25-bookworm AS temporal-build
ARG TEMPORAL_SERVER_VERSION
ARG TEMPORAL_UI_VERSION
RUN GOBIN=/out go install go.temporal.io/server/cmd/server@${TEMPORAL_SERVER_VERSION} && \
      mv /out/server /out/temporal-server && \
    GOBIN=/out go install go.temporal.io/server/cmd/tools/sql@${TEMPORAL_SERVER_VERSION} && \
      mv /out/sql /out/temporal-sql-tool && \
    GOBIN=/out go install github.com/temporalio/ui-server/v2/cmd/server@${TEMPORAL_UI_VERSION} && \
      mv /out/server /out/temporal-ui-server

FROM debian:bookworm-slim AS temporal
COPY --from=temporal-build /out/ /usr/local/bin/
COPY temporal /etc/mx-failover/temporal
USER nobody
CMD ["bash", "/etc/mx-failover/temporal/start-server.sh"]
