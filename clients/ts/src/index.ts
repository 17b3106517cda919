// The package's surface: the generated messages and the UserService descriptor (src/gen, `make proto-generate`).
// Call it with Connect: createClient(UserService, createGrpcTransport({ baseUrl })) from @connectrpc/connect(-node).
export * from "./gen/userservice/v1/user_service_pb.js";
