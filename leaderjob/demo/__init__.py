"""`leaderjob demo`: a throwaway etcd, three replicas, a crash and a graceful stop."""
