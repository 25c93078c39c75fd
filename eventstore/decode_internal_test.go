package eventstore

import (
	"encoding/json"
	"testing"

	"berth/domain"
)

// TestDecodeMetadataMatchesEncodingJSON checks the metadata fast path
// against encoding/json on the forms jsonb prints and on everything it must
// hand over to encoding/json.
func TestDecodeMetadataMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	cases := []string{
		`{}`,
		`{"actor": {"id": "u-1", "kind": "user", "name": "alice"}, "origin": "203.0.113.7", "command_id": "c-1", "causation_id": "e-1", "correlation_id": "k-1"}`,
		`{"actor": {"id": "system", "kind": "system"}}`,
		`{"actor": {"id": "u\"1", "kind": "user"}}`,
		`{"actor": {"id": "\u00e9", "kind": "user"}, "origin": "é"}`,
		`{"actor": {"id": null, "kind": "user"}}`,
		`{"actor": {"id": "u-1", "kind": "user", "extra": 1}}`,
		`{"Actor": {"ID": "u-1"}}`,
		`{"unknown": [1, 2, {"a": "b"}], "origin": "x"}`,
		`{"actor": {}, "origin": ""}`,
		"{\"origin\":\"a\"\n}",
		`{"origin": "a",}`,
		`{"origin": "a"} x`,
		`{"origin": 5}`,
		`[]`,
	}
	for _, in := range cases {
		t.Run(in, func(t *testing.T) {
			var want domain.Metadata
			wantErr := json.Unmarshal([]byte(in), &want)
			var got domain.Metadata
			err := newRowDecoder().decodeMetadata([]byte(in), &got)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("error: got %v, want %v", err, wantErr)
			}
			if err == nil && got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
}
