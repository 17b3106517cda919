"""SCIM 2.0 (RFC 7643, RFC 7644) at /scim/v2: an adapter like REST and gRPC over the same use cases.

`routes.py` (handlers, access, the sub-application), `resources.py` (a user as a SCIM resource, attribute
selection), `discovery.py` (ServiceProviderConfig, Schemas, ResourceTypes), `errors.py` (the SCIM Error
schema), `patch.py` (PATCH operations as a change of the user), `filters.py` (filters as a domain search).
"""
