# The service's own processes (ingest, worker, api, mailbox, init) from one image; docker-compose.yml picks the
# command. The `mailserver` target adds Debian's Dovecot to it, for the dovecot service (temporary mailboxes).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
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
