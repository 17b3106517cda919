// Command example calls userservice.v1.UserService over gRPC with a ServiceAccount token read from a file:
// it creates a user with an idempotency key, reads it back, lists users with a filter and prints the first
// three retained change events.
//
//	USERSERVICE_TARGET=127.0.0.1:50051 USERSERVICE_TOKEN_FILE=/var/run/secrets/userservice/token go run ./example
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	userservicev1 "userservice.io/clients/go/userservice/v1"
)

// tokenFile sends the token in the file as a bearer token, read anew for every call: the kubelet rewrites a
// projected token before it expires.
type tokenFile struct {
	path   string
	secure bool
}

func (t tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	raw, err := os.ReadFile(t.path)
	if err != nil {
		return nil, fmt.Errorf("reading the token file: %w", err)
	}
	return map[string]string{"authorization": "Bearer " + strings.TrimSpace(string(raw))}, nil
}

func (t tokenFile) RequireTransportSecurity() bool { return t.secure }

func main() {
	target, tokenPath := os.Getenv("USERSERVICE_TARGET"), os.Getenv("USERSERVICE_TOKEN_FILE")
	if target == "" || tokenPath == "" {
		log.Fatal("set USERSERVICE_TARGET (host:port) and USERSERVICE_TOKEN_FILE")
	}
	// TLS with the CA bundle in USERSERVICE_CA_FILE; without it, plaintext (loopback only).
	transport := insecure.NewCredentials()
	if caFile := os.Getenv("USERSERVICE_CA_FILE"); caFile != "" {
		tls, err := credentials.NewClientTLSFromFile(caFile, "")
		if err != nil {
			log.Fatalf("loading the CA bundle: %v", err)
		}
		transport = tls
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(transport),
		grpc.WithPerRPCCredentials(tokenFile{path: tokenPath, secure: os.Getenv("USERSERVICE_CA_FILE") != ""}))
	if err != nil {
		log.Fatalf("connecting: %v", err)
	}
	defer conn.Close()
	users := userservicev1.NewUserServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	suffix := randomHex(6)
	// The request id makes the create safe to retry: the same id returns the user created the first time.
	created, err := users.CreateUser(ctx, &userservicev1.CreateUserRequest{
		RequestId: "example-" + randomHex(16),
		User: &userservicev1.User{
			FirstName: "Grace", LastName: "Hopper", Nickname: "grace" + suffix,
			Email: "grace" + suffix + "@example.com", Country: "US", Password: randomHex(32),
		},
	})
	if err != nil {
		log.Fatalf("CreateUser: %v", err)
	}
	fmt.Printf("created %s %s\n", created.GetId(), created.GetNickname())

	read, err := users.GetUser(ctx, &userservicev1.GetUserRequest{Id: created.GetId()})
	if err != nil {
		log.Fatalf("GetUser: %v", err)
	}
	fmt.Printf("read %s %s\n", read.GetId(), read.GetEmail())

	page, err := users.ListUsers(ctx, &userservicev1.ListUsersRequest{
		Filter: fmt.Sprintf("nickname = %q", created.GetNickname()),
	})
	if err != nil {
		log.Fatalf("ListUsers: %v", err)
	}
	fmt.Printf("listed %d\n", len(page.GetUsers()))

	stream, err := users.WatchUserEvents(ctx, &userservicev1.WatchUserEventsRequest{AfterCursor: "earliest"})
	if err != nil {
		log.Fatalf("WatchUserEvents: %v", err)
	}
	for range 3 {
		event, err := stream.Recv()
		if err != nil {
			log.Fatalf("WatchUserEvents: %v", err)
		}
		fmt.Printf("event %s %s %s\n", event.GetCursor(), event.GetType(), event.GetSubject())
	}
}

func randomHex(n int) string {
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		log.Fatal(err)
	}
	return hex.EncodeToString(raw)[:n]
}
