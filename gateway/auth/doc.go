// Package auth is the credential and authorization core of the admin gateway:
// password hashing and policy, API client secrets, signed tokens for logged-in
// administrators, roles and the authorization check, name rules, and a helper
// for files holding a secret. It is a pure library: no gRPC, no clock (every
// time is passed in), no I/O except WriteSecretFile and ReadSecretFile; the
// random parts read crypto/rand.
//
// Contracts:
//
//   - Passwords (password.go) are hashed with argon2id into PHC strings
//     "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>" (unpadded
//     standard base64). DefaultParams costs 64 MiB and about 0.15 s of two
//     cores per hash (BenchmarkHashPasswordDefault): the gateway must bound
//     concurrent logins.
//     VerifyPassword compares in constant time and returns an error only for
//     an encoding it cannot read (ErrMalformedHash), never for a wrong
//     password. CheckPassword states the policy for new passwords.
//   - API client secrets (secret.go) are "sbs_" + 256 random bits; only
//     SHA-256 of the whole clear text is stored (the secret is high-entropy,
//     so a fast hash is enough and every request can be checked).
//   - Tokens (token.go) are "sbt1.<payload>.<mac>": a JSON payload naming the
//     signing key, HMAC-SHA256 over "sbt1.<payload>", both unpadded base64url.
//     Any node holding the key ring verifies a token issued by any other.
//     Claims.Generation is the account's generation when the token was
//     issued: the gateway compares it with the account's current one, so a
//     password change, role change, disable or delete ends older tokens.
//   - Authorize (authz.go) decides from a Principal, a Rule and the target's
//     tenant alone; every refusal wraps ErrPermissionDenied.
//   - Account names, tenants, secret ids and key ids follow ValidName.
//
// Every error this package returns can be matched with errors.Is against one
// of its Err* values.
package auth
