#!/bin/sh
# Prestart step of the container image: the migrations of the service named by $SERVICE
# (intake | followup | ledelsesinfo), against the database its settings name. Idempotent.
set -eu
: "${SERVICE:?set SERVICE to intake, followup or ledelsesinfo}"
case "$SERVICE" in
    intake|followup|ledelsesinfo) ;;
    *) echo "prestart: unknown SERVICE '$SERVICE'" >&2; exit 2 ;;
esac
echo "prestart: migrating $SERVICE" >&2
exec python -m "services.$SERVICE" migrate
