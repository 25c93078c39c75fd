package imagegc_test

import (
	"slices"
	"strings"
	"testing"

	"berth/handlers/imagegc"
)

func TestCreatedImages(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want []string
	}{
		{"nothing", "", nil},
		{"failed after two committed steps", `Step 1/5 : FROM scratch
 ---> 
Step 2/5 : COPY busybox /bin/busybox
 ---> Using cache
 ---> 60c9a0e152e4
Step 3/5 : COPY blob /blob
 ---> 9cd14e3bcc20
Step 4/5 : ENV A=b
 ---> Running in edadfdc691bd
Removing intermediate container edadfdc691bd
 ---> 0123456789ab
Step 5/5 : RUN ["/bin/busybox","false"]
 ---> Running in 1111111111aa
The command '/bin/busybox false' returned a non-zero code: 1`, []string{"9cd14e3bcc20", "0123456789ab"}},
		{"a base image is not the build's", `Step 1/2 : FROM debian:12
 ---> 4d9c2f1a7e3b
Step 2/2 : COPY x /x
 ---> aaaaaaaaaaaa`, []string{"aaaaaaaaaaaa"}},
		{"hostile lines name nothing", "Step 2/3 : COPY a b\n ---> ../../etc\n ---> 9cd14e3bcc20 extra\n ---> ZZZZZZZZZZZZ", nil},
	}
	for _, tt := range tests {
		var lines []string
		if tt.out != "" {
			lines = strings.Split(tt.out, "\n")
		}
		if got := imagegc.CreatedImages(lines); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}
