"""Who may call: Kubernetes ServiceAccount tokens (TokenReview) and Kubernetes RBAC (SubjectAccessReview), shared
by the REST middleware and the gRPC interceptor."""
