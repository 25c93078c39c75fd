package domain

import "context"

// SecretSealer encrypts and decrypts secret values with the data key of one
// application. The domain and the log only ever see ciphertext; plaintext
// exists only in the command handler that seals it and the deployer that opens
// it.
//
// Implementations are safe for concurrent use. Open fails with ErrNotFound
// when the application's data key was destroyed (its secrets are shredded)
// and with ErrInvalid when the ciphertext is not authentic.
type SecretSealer interface {
	// Seal encrypts plaintext for app; app is bound into the ciphertext so
	// that it cannot be opened for another application.
	Seal(ctx context.Context, app string, plaintext []byte) (ciphertext []byte, err error)
	// Open decrypts a ciphertext Seal produced for app.
	Open(ctx context.Context, app string, ciphertext []byte) (plaintext []byte, err error)
}
