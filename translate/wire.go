package translate

import (
	"errors"
	"fmt"
	"sync"

	"github.com/gogo/protobuf/protoc-gen-gogo/descriptor"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// The decoders generated into mesos-go v0.0.11 predate gogo's fix for
// CVE-2021-3121: a length prefix close to MaxInt overflows the end index and
// the decoder slices out of range (a panic, not an error). checkWire walks the
// protobuf wire format first, guided by the schema so that it descends into
// exactly the sub-messages the generated code will, and refuses any length
// or fixed-width field that runs past its enclosing message. It also refuses
// groups (mesos.proto has none; the generated skipper recurses on them) and
// bounds nesting.

const maxWireDepth = 64

// wireMsg is the part of a message's schema checkWire needs: which field
// numbers hold sub-messages, and their schemas.
type wireMsg struct {
	children map[int32]*wireMsg
}

var (
	wireSchemaOnce sync.Once
	wireRoot       *wireMsg
)

func loadWireSchema() {
	fd, md := descriptor.ForMessage(&mesos.ContainerInfo{})
	byName := make(map[string]*descriptor.DescriptorProto) // ".mesos.Volume.Source"
	var index func(prefix string, ms []*descriptor.DescriptorProto)
	index = func(prefix string, ms []*descriptor.DescriptorProto) {
		for _, m := range ms {
			name := prefix + "." + m.GetName()
			byName[name] = m
			index(name, m.NestedType)
		}
	}
	prefix := ""
	if p := fd.GetPackage(); p != "" {
		prefix = "." + p
	}
	index(prefix, fd.MessageType)

	compiled := make(map[*descriptor.DescriptorProto]*wireMsg)
	var compile func(md *descriptor.DescriptorProto) *wireMsg
	compile = func(md *descriptor.DescriptorProto) *wireMsg {
		if w, ok := compiled[md]; ok {
			return w
		}
		w := &wireMsg{children: make(map[int32]*wireMsg)}
		compiled[md] = w // before recursing: a recursive schema stays finite
		for _, f := range md.Field {
			if f.GetType() != descriptor.FieldDescriptorProto_TYPE_MESSAGE {
				continue
			}
			if child := byName[f.GetTypeName()]; child != nil {
				w.children[f.GetNumber()] = compile(child)
			}
		}
		return w
	}
	wireRoot = compile(md)
}

// checkWire reports whether b is a structurally sound encoding of a
// ContainerInfo: sound enough that the generated decoder cannot panic.
func checkWire(b []byte) error {
	wireSchemaOnce.Do(loadWireSchema)
	return checkMessage(b, wireRoot, 0)
}

var (
	errTruncated = errors.New("truncated field")
	errVarint    = errors.New("varint longer than 10 bytes")
)

func checkMessage(b []byte, md *wireMsg, depth int) error {
	if depth > maxWireDepth {
		return fmt.Errorf("nesting deeper than %d", maxWireDepth)
	}
	for i := 0; i < len(b); {
		tag, n, err := readVarint(b[i:])
		if err != nil {
			return err
		}
		i += n
		num, wt := tag>>3, tag&7
		if num == 0 || num > 1<<29-1 {
			return fmt.Errorf("illegal field number %d", num)
		}
		switch wt {
		case 0:
			_, n, err := readVarint(b[i:])
			if err != nil {
				return err
			}
			i += n
		case 1:
			if len(b)-i < 8 {
				return errTruncated
			}
			i += 8
		case 5:
			if len(b)-i < 4 {
				return errTruncated
			}
			i += 4
		case 2:
			l, n, err := readVarint(b[i:])
			if err != nil {
				return err
			}
			i += n
			if l > uint64(len(b)-i) {
				return fmt.Errorf("field %d: length %d runs past the %d bytes left", num, l, len(b)-i)
			}
			sub := b[i : i+int(l)]
			i += int(l)
			if child := md.children[int32(num)]; child != nil {
				if err := checkMessage(sub, child, depth+1); err != nil {
					return fmt.Errorf("field %d: %w", num, err)
				}
			}
		case 3, 4:
			return fmt.Errorf("field %d: groups are not used by mesos.proto", num)
		default:
			return fmt.Errorf("field %d: illegal wire type %d", num, wt)
		}
	}
	return nil
}

// readVarint decodes exactly as the generated code does (bits past 64 are
// dropped, an 11th byte is an error), so both agree on every length.
func readVarint(b []byte) (v uint64, n int, err error) {
	for shift := uint(0); ; shift += 7 {
		if shift >= 64 {
			return 0, 0, errVarint
		}
		if n >= len(b) {
			return 0, 0, errTruncated
		}
		c := b[n]
		n++
		v |= uint64(c&0x7F) << shift
		if c < 0x80 {
			return v, n, nil
		}
	}
}
