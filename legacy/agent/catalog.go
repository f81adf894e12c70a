package agent

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// The agent has no image store: an "image" is only a Docker-style config
// (entrypoint, cmd, env, workingDir) applied to a host process. This lets a
// bridge send real Titus-style image references and still get a runnable
// process, and lets "pull failures" be simulated by leaving an image out.
//
//go:embed catalog.default.json
var defaultCatalogJSON []byte

// ImageConfig is the subset of a Docker image config this agent honours.
type ImageConfig struct {
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Command    []string          `json:"command,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	WorkingDir string            `json:"workingDir,omitempty"`
}

// Catalog maps image names (with or without tag) to configs. The key "*" is
// an optional fallback for any image not listed.
type Catalog struct {
	Images map[string]ImageConfig `json:"images"`
}

// DefaultCatalog returns the embedded catalog.default.json.
func DefaultCatalog() (*Catalog, error) {
	return parseCatalog(defaultCatalogJSON, "embedded catalog.default.json")
}

// LoadCatalog reads a catalog file; an empty path means DefaultCatalog.
func LoadCatalog(path string) (*Catalog, error) {
	if path == "" {
		return DefaultCatalog()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("image catalog: %w", err)
	}
	return parseCatalog(b, path)
}

func parseCatalog(b []byte, src string) (*Catalog, error) {
	var c Catalog
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("image catalog %s: %w", src, err)
	}
	if c.Images == nil {
		c.Images = map[string]ImageConfig{}
	}
	return &c, nil
}

// Lookup finds the config for an image reference. It tries the exact name,
// then without digest, without registry host (and Docker Hub's "library/"),
// then the same without tag, then "*". The second result is the catalog key that matched.
func (c *Catalog) Lookup(ref string) (ImageConfig, string, bool) {
	if c == nil {
		return ImageConfig{}, "", false
	}
	for _, name := range imageCandidates(ref) {
		if cfg, ok := c.Images[name]; ok {
			return cfg, name, true
		}
	}
	if cfg, ok := c.Images["*"]; ok {
		return cfg, "*", true
	}
	return ImageConfig{}, "", false
}

func imageCandidates(ref string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		for _, o := range out {
			if o == s {
				return
			}
		}
		out = append(out, s)
	}
	noDigest := ref
	if i := strings.IndexByte(noDigest, '@'); i >= 0 {
		noDigest = noDigest[:i]
	}
	short := noDigest
	for _, p := range []string{"docker.io/", "index.docker.io/", "registry-1.docker.io/"} {
		short = strings.TrimPrefix(short, p)
	}
	short = strings.TrimPrefix(short, "library/")
	// Any other registry host ("registry.example.com:5000/app") is dropped
	// too, so a catalog can be keyed by repository name alone.
	noRegistry := short
	if first, rest, ok := strings.Cut(short, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		noRegistry = rest
	}
	add(ref)
	add(noDigest)
	add(short)
	add(noRegistry)
	add(untagged(noDigest))
	add(untagged(short))
	add(untagged(noRegistry))
	return out
}

// untagged drops a ":tag"; a colon before the last slash is a registry port
// and stays.
func untagged(name string) string {
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		return name[:i]
	}
	return name
}
