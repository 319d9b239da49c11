package console

import (
	"fmt"
	"unicode/utf8"

	"github.com/outpost-appliance/outpost/internal/atomicfile"
	"golang.org/x/crypto/bcrypt"
)

// PasswordFile is the name of the console password's hash in the data
// directory.
const PasswordFile = "console.passwd"

// MinPasswordLength is the shortest console password accepted, in
// characters.
const MinPasswordLength = 12

// SetPassword writes the bcrypt hash of password to path (mode 0600,
// atomically). bcrypt takes at most 72 bytes, so longer passwords are
// refused rather than silently cut.
func SetPassword(path, password string) error {
	if n := utf8.RuneCountInString(password); n < MinPasswordLength {
		return fmt.Errorf("the password has %d characters; use at least %d", n, MinPasswordLength)
	}
	if len(password) > 72 {
		return fmt.Errorf("the password is %d bytes; bcrypt uses at most 72, so use a shorter one", len(password))
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), 12)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, append(hash, '\n'), 0o600); err != nil {
		return fmt.Errorf("write the console password %s: %w", path, err)
	}
	return nil
}
