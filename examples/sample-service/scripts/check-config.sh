#!/bin/sh
# BeforeInstall: the configuration must parse, or nothing is installed or started.
set -eu
grep -q '^version:' config/service.yml || { echo "config/service.yml names no version" >&2; exit 1; }
echo "configuration of $APPLICATION_NAME for $DEPLOYMENT_GROUP_NAME looks complete"
