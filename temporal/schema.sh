#!/usr/bin/env bash
# Makes and upgrades the Temporal server's two PostgreSQL databases with its own SQL tool and the schemas built
# into that tool (the same release as the server), so the schema always matches the binary. Safe at every start:
# an existing database is kept, the version tables are never reset, and update-schema applies only what is newer.
# Used by `npm run cluster` (src/stack/temporal-server.ts) and by docker-compose.yml's temporal-schema service.
#
# Environment: SQL_HOST, SQL_PORT, SQL_USER, SQL_PASSWORD (read by the tool itself); TEMPORAL_SQL_TOOL, the
# tool's path (default: temporal-sql-tool on PATH).
set -euo pipefail
tool=${TEMPORAL_SQL_TOOL:-temporal-sql-tool}

for pair in temporal:postgresql/v12/temporal temporal_visibility:postgresql/v12/visibility; do
  db=${pair%%:*} schema=${pair#*:}
  sql=("$tool" --plugin postgres12 --db "$db")
  # "already exists" is the normal case after the first start; any other failure shows again just below.
  "${sql[@]}" create-database >/dev/null 2>&1 || true
  "${sql[@]}" setup-schema --version 0.0
  "${sql[@]}" update-schema --schema-name "$schema"
done
