package memstore_test

import (
	"testing"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/eventstore/storetest"
)

func TestMemstoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) domain.EventStore { return memstore.New() })
}
