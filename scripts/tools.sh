#!/usr/bin/env bash
# Installs the Temporal CLI (dev server + Web UI), MinIO, and for `npm run cluster` the Temporal server, its SQL tool
# and its Web UI server into .tools/bin with `go install`, and checks that
# PostgreSQL's server binaries, rspamd, dnsmasq and Dovecot are present. Idempotent: with the right versions in place it takes well under a
# second. Built binaries are also kept in a per-machine cache (MXF_TOOLS_CACHE) so that a fresh clone on the same
# machine, CI's included, copies them instead of spending minutes compiling.
#
#   bash scripts/tools.sh            install what is missing, say what is there
#   bash scripts/tools.sh --quiet    the same, silent when nothing had to be done (used by npm run dev / test)
set -euo pipefail

cd "$(dirname "$0")/.."
quiet=false
[[ "${1:-}" == "--quiet" || "${1:-}" == "--if-missing" ]] && quiet=true

# MinIO's release tags (RELEASE.2025-10-15T17-29-55Z) are not semver; the Go module proxy serves MinIO only as
# pseudo-versions, and refuses the pseudo-version of that release's commit (9e49d5e7a648) here. We build the
# newest commit it serves, which is later than that release and carries its security fixes. See README.md.
TEMPORAL_MODULE=github.com/temporalio/cli
TEMPORAL_PKG=github.com/temporalio/cli/cmd/temporal
TEMPORAL_VERSION=v1.5.1
MINIO_MODULE=github.com/minio/minio
MINIO_PKG=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# `npm run cluster` and `npm run test:cluster` run the real Temporal server on PostgreSQL, built like the CLI:
# the same server release the CLI embeds (its go.mod requires go.temporal.io/server v1.29.1), its SQL schema
# tool, and the Web UI server the CLI embeds (ui-server v2.42.1). docker-compose.yml names the same versions
# (test/temporal-config.test.ts reads them from here).
TEMPORAL_SERVER_MODULE=go.temporal.io/server
TEMPORAL_SERVER_VERSION=v1.29.1
TEMPORAL_UI_MODULE=github.com/temporalio/ui-server/v2
TEMPORAL_UI_VERSION=v2.42.1

bin_dir="$PWD/.tools/bin"
cache_dir="${MXF_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mx-failover/tools}"
mkdir -p "$bin_dir" "$cache_dir"

fail() {
  echo "mx-failover setup: $1" >&2
  echo "mx-failover setup: without these tools, run the production topology instead: docker compose up (see README.md)." >&2
  exit 1
}

say() { $quiet || echo "$@"; }

# The module version a Go binary was built from, or nothing.
built_version() { [[ -x "$1" ]] && go version -m "$1" 2>/dev/null | awk -v m="$2" '$1 == "mod" && $2 == m { print $3 }'; }

install_tool() { # name module package version [the name go install gives the binary]
  local name=$1 module=$2 pkg=$3 version=$4 built=${5:-$1}
  local target="$bin_dir/$name" cached="$cache_dir/$name-$version"
  if [[ "$(built_version "$target" "$module")" == "$version" ]]; then
    say "$name $version: present"
    return
  fi
  if [[ "$(built_version "$cached" "$module")" != "$version" ]]; then
    echo "mx-failover setup: building $name $version with go install (a few minutes on 2 cores, once per machine)..." >&2
    local tmp
    tmp=$(mktemp -d)
    # A toolchain newer than the module was tested with has broken builds before; fall back to go1.25.4.
    if ! GOBIN="$tmp" go install "$pkg@$version" >"$tmp/build.log" 2>&1; then
      echo "mx-failover setup: $name failed to build with $(go env GOVERSION); retrying with go1.25.4" >&2
      GOTOOLCHAIN=go1.25.4 GOBIN="$tmp" go install "$pkg@$version" >>"$tmp/build.log" 2>&1 ||
        { tail -n 20 "$tmp/build.log" >&2; fail "could not build $name $version (log above)."; }
    fi
    mv "$tmp/$built" "$cached"
    rm -rf "$tmp"
  fi
  cp "$cached" "$target.tmp" && mv "$target.tmp" "$target"
  say "$name $version: installed in .tools/bin"
}

# Debian packages the service, its tests and its benches use. Installed when missing and we may (root with
# apt-get); otherwise the one line to run is printed and setup fails, since the tests cannot pass without them.
debian_packages_missing() {
  local missing=()
  command -v swaks >/dev/null 2>&1 || missing+=(swaks)
  perl -MNet::SSLeay -MIO::Socket::SSL -e1 2>/dev/null || missing+=(libnet-ssleay-perl libio-socket-ssl-perl)
  # Postfix is the bench's yardstick and smtp-source its load generator.
  [[ -x /usr/sbin/postfix && -x /usr/sbin/smtp-source ]] || missing+=(postfix)
  # The stack's private spam filter and DNS server (src/stack/rspamd.ts, src/stack/dns.ts); the tests always run
  # their own. Only the binaries are used: we never start or stop the package's rspamd service (on a machine with
  # systemd, installing the package starts it on 11333/11334; ours defaults to 11343/11344 beside it).
  command -v rspamd >/dev/null 2>&1 || missing+=(rspamd)
  [[ -x /usr/sbin/dnsmasq ]] || missing+=(dnsmasq-base)
  # Temporary mailboxes (src/stack/dovecot.ts): IMAP, LMTP and submission, sign-ins from PostgreSQL. Only the
  # binaries are used; our instance has its own configuration and ports, never the package's service.
  [[ -x /usr/sbin/dovecot && -x /usr/lib/dovecot/imap && -x /usr/lib/dovecot/lmtp && -x /usr/lib/dovecot/submission &&
    -e /usr/lib/dovecot/modules/auth/libdriver_pgsql.so ]] ||
    missing+=(dovecot-imapd dovecot-lmtpd dovecot-submissiond dovecot-pgsql)
  # The web inbox's browser test drives Debian's Chromium through playwright-core (never a downloaded browser).
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  if [[ -z "${DATABASE_URL:-}" ]] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 &&
    ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
  fi
  echo "${missing[@]}"
}

read -r -a missing <<<"$(debian_packages_missing)"
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "mx-failover setup: installing Debian packages: ${missing[*]}" >&2
    # "No configuration": Postfix installed for the bench must not start a system MTA or touch /etc/postfix/main.cf.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null ||
      fail "apt-get could not install ${missing[*]}"
  else
    fail "Debian packages missing: ${missing[*]}. Run: sudo apt-get install -y --no-install-recommends ${missing[*]}"
  fi
fi

command -v go >/dev/null 2>&1 || fail "Go is not installed (needed once, to build the Temporal CLI, the Temporal server and MinIO). Install Go >= 1.25."

# A private PostgreSQL cluster is made with initdb unless DATABASE_URL points at a server.
if [[ -z "${DATABASE_URL:-}" ]]; then
  pg_bin=""
  if command -v initdb >/dev/null 2>&1; then pg_bin=$(dirname "$(command -v initdb)"); fi
  if [[ -z "$pg_bin" ]]; then
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  [[ -n "$pg_bin" && -x "$pg_bin/initdb" && -x "$pg_bin/postgres" ]] ||
    fail "PostgreSQL's server binaries (initdb, postgres) are not installed: apt-get install postgresql, or set DATABASE_URL to an existing server."
fi

install_tool temporal "$TEMPORAL_MODULE" "$TEMPORAL_PKG" "$TEMPORAL_VERSION"
install_tool minio "$MINIO_MODULE" "$MINIO_PKG" "$MINIO_VERSION"
install_tool temporal-server "$TEMPORAL_SERVER_MODULE" "$TEMPORAL_SERVER_MODULE/cmd/server" "$TEMPORAL_SERVER_VERSION" server
install_tool temporal-sql-tool "$TEMPORAL_SERVER_MODULE" "$TEMPORAL_SERVER_MODULE/cmd/tools/sql" "$TEMPORAL_SERVER_VERSION" sql
install_tool temporal-ui-server "$TEMPORAL_UI_MODULE" "$TEMPORAL_UI_MODULE/cmd/server" "$TEMPORAL_UI_VERSION" server
