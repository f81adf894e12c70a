#!/usr/bin/env bash
# Placeholder demo (the lead replaces it): brings the stack up and prints the
# environment to use it with.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
make --no-print-directory up
echo
echo "The stack is up. To use it:"
echo "  set -a; . .local/env; set +a"
echo "  \$KUBECTL get nodes"
echo
cat .local/env
