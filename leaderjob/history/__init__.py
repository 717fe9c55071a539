"""An election's records in etcd: slot claims, run history, control switches, and the slot ledger
check."""
