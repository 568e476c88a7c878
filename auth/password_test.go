package auth

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// passwordSHA512 is sha512("password").hexdigest(), as the original backend
// stored it.
const passwordSHA512 = "b109f3bbbc244eb82441917ed06d618b9008dd09b3befd1b5e07394c706a8bb980b1d7785e5976ec049b46df5f1326af5a2ea6d103fd07c95385ffab0cacbc86"

func TestCheckLegacyPassword(t *testing.T) {
	// Digests one bit away from the right one, at either end.
	first := "3" + passwordSHA512[1:]
	last := passwordSHA512[:127] + "7"
	tests := []struct {
		name     string
		password string
		hash     string
		want     bool
	}{
		{"known vector", "password", LegacyHash(passwordSHA512), true},
		{"upper-case hex", "password", LegacyHash(strings.ToUpper(passwordSHA512)), true},
		{"wrong password", "Password", LegacyHash(passwordSHA512), false},
		{"empty password", "", LegacyHash(passwordSHA512), false},
		{"first byte differs", "password", LegacyHash(first), false},
		{"last byte differs", "password", LegacyHash(last), false},
		// Python's hashlib.sha512("비밀번호".encode("utf-8")).hexdigest().
		{"not ASCII", "비밀번호", LegacyHash("76f7d5ea7c8b451b773712929531ce92410682a5b61d1b5fbb5f4ebbfa6c517bf095e6db5c26e8c483e60d8385448a6a6afd9e513045b87699ae2e71faeb32d6"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.True(t, NeedsUpgrade(tt.hash))
			ok, err := CheckPassword(tt.password, tt.hash)
			require.NoError(t, err)
			require.Equal(t, tt.want, ok)
		})
	}
}

func TestCheckLegacyPasswordMalformed(t *testing.T) {
	for _, digest := range []string{
		"",
		passwordSHA512[:126],             // 63 bytes
		passwordSHA512[:127],             // odd length
		passwordSHA512 + "00",            // 65 bytes
		"g" + passwordSHA512[1:],         // not hex
		passwordSHA512[:127] + " ",       // not hex at the end
		"$" + passwordSHA512[1:],         // another field
		LegacyHash(passwordSHA512)[:128], // prefix twice, cut to length
		strings.Repeat("é", 64)[:128],    // bytes that are not hex digits
		" " + passwordSHA512[:127],       // leading space
		passwordSHA512[:64] + "\n" + passwordSHA512[65:], // newline inside
	} {
		ok, err := CheckPassword("password", LegacyHash(digest))
		require.ErrorIs(t, err, errBadHash, "%q", digest)
		require.False(t, ok)
	}
}

func TestNeedsUpgrade(t *testing.T) {
	hash, err := HashPassword("password", PasswordParams{MemoryKiB: 1024, Time: 1, Threads: 1})
	require.NoError(t, err)
	require.False(t, NeedsUpgrade(hash), "argon2id stays")
	require.True(t, NeedsUpgrade(LegacyHash(passwordSHA512)))
	require.False(t, NeedsUpgrade("$SHA512$"+passwordSHA512), "the prefix is exact")
	_, err = CheckPassword("password", "$SHA512$"+passwordSHA512)
	require.ErrorIs(t, err, errBadHash, "and nothing else is legacy")
}
