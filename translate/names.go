package translate

// Names every part that reads or writes pods agrees on: the bridge writes
// them, the gateway and users read them.
const (
	// AnnotationState carries the state machine's state of the pod's main
	// container, so readers that speak the legacy job API (the gateway)
	// show the same Titus state the table maps, not one guessed from the
	// phase.
	AnnotationState = "vk-titus.io/state"
	// AttributeLabelPrefix prefixes agent attributes turned into node
	// labels, so nodeSelector and affinity work as attribute constraints did.
	AttributeLabelPrefix = "legacy.vk-titus.io/"
)
