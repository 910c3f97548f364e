#!/bin/sh
# custom_adapter.sh PEFTC ARGS...: runs the example program example_custom_adapter (the peftc CLI
# plus the user method GAIN, examples/custom_adapter.c), built beside the peftc binary PEFTC.
bin="$(dirname "$1")/example_custom_adapter"
shift
exec "$bin" "$@"
