#!/bin/sh
# Prints the nats-server user block of one workstation, for the users list of deploy/nats/users.conf, and
# writes its password to PASSWORD_FILE (mode 0600) for the workstation's `floor.password_file`.
#
#   add-workstation.sh SITE AGENT PASSWORD_FILE
#
# and paste the block into the `users: [ … ]` list of /etc/nats/users.conf.
#
# SITE and AGENT are the ids of `floor.site` and the workstation's agent id (`floor.agent`, else
# `agent.extension`, else `agent.endpoint`); they are turned into subject tokens by the same rule
# as the daemon: every character outside [A-Za-z0-9_-] becomes "_" (PJSIP/1001 -> PJSIP_1001).
# The workstation may publish only its own events and the two requests (history, ledger head),
# ask whether the stream exists, and receive only its own acks and replies (its inbox prefix is
# _INBOX.<site>.<agent>). It cannot publish acks, create, delete or purge streams.
set -eu
if [ $# -ne 3 ]; then
    echo "usage: $0 SITE AGENT PASSWORD_FILE" >&2
    exit 2
fi
token() {
    t=$(printf '%s' "$1" | LC_ALL=C sed 's/[^A-Za-z0-9_-]/_/g')
    if [ -z "$t" ]; then t=_; fi
    if [ ${#t} -gt 64 ]; then
        echo "$0: id '$1' is longer than 64 characters; shorten it" >&2
        exit 2
    fi
    printf '%s' "$t"
}
site=$(token "$1")
agent=$(token "$2")
umask 077
password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=' )
printf '%s\n' "$password" > "$3"
cat <<BLOCK
{
  user: "$site.$agent"
  password: "$password"
  permissions: {
    publish: {
      allow: ["callguard.v1.$site.$agent.>", "callguard.v1.$site.history", "callguard.v1.$site.ledger.head", "\$JS.API.STREAM.INFO.CALLGUARD"]
      deny: ["callguard.v1.$site.$agent.ack"]
    }
    subscribe: {
      allow: ["callguard.v1.$site.$agent.ack", "_INBOX.$site.$agent.>"]
    }
  }
}
BLOCK
