"""The API's messages (User, ListUsersResponse, UserEvent, …), generated from proto/ by `make proto-generate`."""

from userservice_client._generated.userservice.v1.user_service_pb2 import *  # noqa: F403
