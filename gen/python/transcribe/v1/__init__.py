"""Generated from protos/ by scripts/gen_proto.sh (make proto). Do not edit."""
