package domain

import (
	"fmt"
	"regexp"
	"strings"
)

// Placement puts an application on a Docker Swarm: it then runs as a
// replicated service of that swarm instead of containers on one engine.
// The zero value (no Swarm) keeps the application on its Docker host.
type Placement struct {
	// Swarm names the swarm (a Swarm aggregate) the application runs on.
	Swarm string `json:"swarm,omitempty"`
	// Constraints are Swarm placement constraints, each
	// "<attribute> == <value>" or "<attribute> != <value>", the attribute
	// one of node.id, node.hostname, node.role, node.platform.os,
	// node.platform.arch, node.labels.<label>, engine.labels.<label>.
	Constraints []string `json:"constraints,omitempty"`
	// Preferences spread the replicas evenly over the values of node
	// attributes, each "node.labels.<label>" (or engine.labels.<label>),
	// in order.
	Preferences []string `json:"preferences,omitempty"`
}

// OnSwarm reports whether the placement puts the application on a swarm.
func (p *Placement) OnSwarm() bool { return p != nil && p.Swarm != "" }

// Limits of placements.
const (
	MaxConstraints   = 16
	MaxPreferences   = 4
	MaxNodeLabelKey  = 128
	MaxNodeLabelText = 256
	// MaxSwarmReplicas bounds the replicas of an application on a swarm.
	MaxSwarmReplicas = 100
)

var (
	nodeLabelKeyRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)
	nodeLabelValueRE = regexp.MustCompile(`^[A-Za-z0-9._:/@+-]*$`)
	constraintRE     = regexp.MustCompile(`^\s*([a-z][a-z.]*[a-z]|(?:node|engine)\.labels\.[A-Za-z0-9._-]+)\s*(==|!=)\s*(\S+)\s*$`)
)

// ValidateNodeLabel checks a node label's key and value: a key of letters,
// digits, '.', '_' and '-' (starting and ending with a letter or digit), a
// value without spaces, quotes or shell characters.
func ValidateNodeLabel(fieldName, key, value string) error {
	if len(key) == 0 || len(key) > MaxNodeLabelKey || !nodeLabelKeyRE.MatchString(key) {
		return Invalid(fieldName+".key", fmt.Sprintf("must be 1 to %d letters, digits, '.', '_' or '-', starting and ending with a letter or digit", MaxNodeLabelKey))
	}
	if len(value) > MaxNodeLabelText || !nodeLabelValueRE.MatchString(value) {
		return Invalid(fieldName+".value", fmt.Sprintf("must be at most %d letters, digits or '.', '_', ':', '/', '@', '+', '-'", MaxNodeLabelText))
	}
	return nil
}

// Constraint is one parsed placement constraint.
type Constraint struct {
	// Attribute is the node attribute ("node.role", "node.labels.zone").
	Attribute string
	// Equal is true for "==", false for "!=".
	Equal bool
	Value string
}

// String is the constraint as Swarm reads it.
func (c Constraint) String() string {
	op := "!="
	if c.Equal {
		op = "=="
	}
	return c.Attribute + op + c.Value
}

// ParseConstraint parses and checks one placement constraint.
func ParseConstraint(fieldName, s string) (Constraint, error) {
	m := constraintRE.FindStringSubmatch(s)
	if m == nil {
		return Constraint{}, Invalid(fieldName, `must be "<attribute> == <value>" or "<attribute> != <value>"`)
	}
	c := Constraint{Attribute: m[1], Equal: m[2] == "==", Value: m[3]}
	switch {
	case c.Attribute == "node.id", c.Attribute == "node.hostname", c.Attribute == "node.platform.os", c.Attribute == "node.platform.arch":
	case c.Attribute == "node.role":
		if c.Value != "manager" && c.Value != "worker" {
			return Constraint{}, Invalid(fieldName, "node.role is manager or worker")
		}
	case strings.HasPrefix(c.Attribute, "node.labels."), strings.HasPrefix(c.Attribute, "engine.labels."):
		key := c.Attribute[strings.Index(c.Attribute, ".labels.")+len(".labels."):]
		if err := ValidateNodeLabel(fieldName, key, c.Value); err != nil {
			return Constraint{}, Invalid(fieldName, "names an invalid label or value")
		}
	default:
		return Constraint{}, Invalid(fieldName, "the attribute must be node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<label> or engine.labels.<label>")
	}
	if len(c.Value) > MaxNodeLabelText || !nodeLabelValueRE.MatchString(c.Value) {
		return Constraint{}, Invalid(fieldName, "the value must be letters, digits or '.', '_', ':', '/', '@', '+', '-'")
	}
	return c, nil
}

// Validate checks a placement under prefix.
func (p Placement) Validate(prefix string) error {
	if p.Swarm == "" {
		if len(p.Constraints) > 0 || len(p.Preferences) > 0 {
			return Invalid(field(prefix, "swarm"), "is required with constraints or preferences")
		}
		return nil
	}
	if err := ValidateName(field(prefix, "swarm"), p.Swarm); err != nil {
		return err
	}
	if len(p.Constraints) > MaxConstraints {
		return Invalid(field(prefix, "constraints"), fmt.Sprintf("at most %d constraints", MaxConstraints))
	}
	for i, c := range p.Constraints {
		if _, err := ParseConstraint(indexed(field(prefix, "constraints"), i), c); err != nil {
			return err
		}
	}
	if len(p.Preferences) > MaxPreferences {
		return Invalid(field(prefix, "preferences"), fmt.Sprintf("at most %d preferences", MaxPreferences))
	}
	for i, s := range p.Preferences {
		f := indexed(field(prefix, "preferences"), i)
		key, ok := strings.CutPrefix(s, "node.labels.")
		if !ok {
			key, ok = strings.CutPrefix(s, "engine.labels.")
		}
		if !ok || ValidateNodeLabel(f, key, "") != nil {
			return Invalid(f, "must be node.labels.<label> or engine.labels.<label>")
		}
	}
	return nil
}

// Matches reports whether a node with these attributes satisfies every
// constraint (attrs maps "node.role", "node.labels.zone", … to values; an
// attribute the node lacks never equals a value).
func Matches(constraints []Constraint, attrs map[string]string) bool {
	for _, c := range constraints {
		v, ok := attrs[c.Attribute]
		eq := ok && strings.EqualFold(v, c.Value)
		if strings.Contains(c.Attribute, ".labels.") {
			eq = ok && v == c.Value
		}
		if eq != c.Equal {
			return false
		}
	}
	return true
}
