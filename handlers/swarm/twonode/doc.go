// Package twonode tests berth's swarm support on a real two-node swarm:
// the local Docker Engine as the manager and a second engine in a network
// namespace as the worker. The tests need root and take minutes; they are
// built with the swarmnodes tag (go tool task swarm, which the test task
// runs after the others, so no other test uses the engine's swarm mode at
// the same time).
package twonode
