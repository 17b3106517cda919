"""userservice_operator: reconciles UserService resources into Kubernetes workloads."""
