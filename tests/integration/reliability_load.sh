#!/bin/bash
# The quick load run for the suite: 4 guests, 20 instrumentations, 50
# concurrent clients for 10 s (tests/reliability/long.sh runs the full one).
exec "$(dirname "$0")/../reliability/load.sh" 4 20 50 10
