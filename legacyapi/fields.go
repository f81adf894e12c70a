package legacyapi

import (
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Project clears every field of m that fields does not name, as Titus's
// ProtobufExt.copy does: names are proto field names, "a.b" keeps field b
// of message a (or of every message in list a, or map a's entry b), and
// "id" is always kept. No fields keeps everything. m is changed in place,
// but maps and lists it shares with others are not.
func Project(m proto.Message, fields []string) {
	if len(fields) == 0 {
		return
	}
	project(m.ProtoReflect(), append([]string{"id"}, fields...))
}

func project(m protoreflect.Message, fields []string) {
	nested := map[string][]string{} // top name → nested names; nil: the whole field
	whole := map[string]bool{}
	for _, f := range fields {
		top, rest, deeper := strings.Cut(f, ".")
		if !deeper {
			whole[top] = true
			continue
		}
		nested[top] = append(nested[top], rest)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		sub, named := nested[name]
		switch {
		case whole[name]:
		case !named:
			m.Clear(fd)
		case fd.IsMap():
			// A new map: the message's may be shared with the Backend's
			// records (the conversions do not copy maps).
			kept := m.NewField(fd)
			for _, k := range sub {
				key := protoreflect.ValueOfString(k).MapKey()
				if v.Map().Has(key) {
					kept.Map().Set(key, v.Map().Get(key))
				}
			}
			m.Set(fd, kept)
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				project(l.Get(i).Message(), sub)
			}
		case fd.Message() != nil:
			project(m.Mutable(fd).Message(), sub)
		}
		return true
	})
}
