// Calls userservice.v1.UserService over gRPC with a ServiceAccount token read from a file: creates a user with an
// idempotency key, reads it back, lists users with a filter and prints the first three retained change events.
//
//   USERSERVICE_URL=http://127.0.0.1:50051 USERSERVICE_TOKEN_FILE=/var/run/secrets/userservice/token \
//     node dist/example/main.js
// An https:// URL uses TLS; USERSERVICE_CA_FILE names the CA bundle that signed the server's certificate.
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "../src/index.js";

const url = process.env.USERSERVICE_URL;
const tokenFile = process.env.USERSERVICE_TOKEN_FILE;
if (!url || !tokenFile) {
  throw new Error("set USERSERVICE_URL (http(s)://host:port) and USERSERVICE_TOKEN_FILE");
}

// The token is read anew for every call: the kubelet rewrites a projected token before it expires.
const bearer: Interceptor = (next) => (request) => {
  request.header.set("authorization", `Bearer ${readFileSync(tokenFile, "utf8").trim()}`);
  return next(request);
};

const caFile = process.env.USERSERVICE_CA_FILE;
const transport = createGrpcTransport({
  baseUrl: url,
  interceptors: [bearer],
  nodeOptions: caFile ? { ca: readFileSync(caFile) } : {},
});
const users = createClient(UserService, transport);
const options = { timeoutMs: 30_000 };

const suffix = randomBytes(3).toString("hex");
// The request id makes the create safe to retry: the same id returns the user created the first time.
const created = await users.createUser(
  {
    requestId: `example-${randomUUID()}`,
    user: {
      firstName: "Grace",
      lastName: "Hopper",
      nickname: `grace${suffix}`,
      email: `grace${suffix}@example.com`,
      country: "US",
      password: randomBytes(18).toString("base64url"),
    },
  },
  options,
);
console.log(`created ${created.id} ${created.nickname}`);

const read = await users.getUser({ id: created.id }, options);
console.log(`read ${read.id} ${read.email}`);

const page = await users.listUsers({ filter: `nickname = "${created.nickname}"` }, options);
console.log(`listed ${page.users.length}`);

const watch = new AbortController();
let seen = 0;
for await (const event of users.watchUserEvents({ afterCursor: "earliest" }, { signal: watch.signal })) {
  console.log(`event ${event.cursor} ${event.type} ${event.subject}`);
  if (++seen === 3) {
    watch.abort();
    break;
  }
}
