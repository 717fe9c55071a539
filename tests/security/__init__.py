"""Security: TLS (server verification, client certificates) and etcd RBAC against real etcd
servers, and argument pass-through to the job. Certificates are generated here, never kept."""
