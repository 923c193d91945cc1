"""The bus keeps blinker's semantics while remembering who listens to whom."""

from __future__ import annotations

import gc

from support import Recorder
from synthora import OpenAIChatBackend, bus
from synthora.events import StartEvent
from synthora.types import Node, NodeType

NODE = Node(name="n", type=NodeType.MODEL)


def start_event() -> StartEvent:
    return StartEvent(run_id="r", seq=0, ts=0, node=NODE, operation="chat")


def test_weak_receivers_still_die():
    """A receiver connected weakly stops hearing events once nothing else holds it."""
    heard = []

    def make_receiver():
        def receiver(sender, **_):
            heard.append(sender)

        return receiver

    receiver = make_receiver()
    bus.on_start.connect(receiver)  # blinker's default: weak
    sender = object()
    bus.dispatch(bus.on_start, sender, event=start_event())
    del receiver
    gc.collect()
    bus.dispatch(bus.on_start, sender, event=start_event())
    assert heard == [sender]


def test_disconnect_takes_effect_at_once():
    """Connecting and disconnecting between two emissions changes who hears the second."""
    heard = []

    def receiver(sender, **_):
        heard.append(sender)

    sender = object()
    bus.dispatch(bus.on_start, sender, event=start_event())
    bus.on_start.connect(receiver, sender=sender, weak=False)
    bus.dispatch(bus.on_start, sender, event=start_event())
    bus.on_start.disconnect(receiver, sender=sender)
    bus.dispatch(bus.on_start, sender, event=start_event())
    assert heard == [sender]


def test_a_new_sender_never_inherits_a_dead_senders_receivers(server):
    """Backends come and go (and ids are recycled): a handler hears only its own backend."""
    recorder = Recorder()

    def backend(**options):
        return OpenAIChatBackend.default("m", api_key="k", base_url=server.base_url, **options)

    for _ in range(10):
        owner = backend(handlers=[recorder])
        owner.run("mine")
        owner.client.close()
        del owner
        gc.collect()
        stranger = backend()
        stranger.run("not mine")
        stranger.client.close()
    assert recorder.kinds.count("start") == 10


def test_remembered_receivers_belong_to_one_object():
    """An entry left by a dead sender whose id a new sender reuses is not used for it."""
    heard = []

    def receiver(sender, **_):
        heard.append(sender)

    sender, dead = object(), object()
    bus.on_start.connect(receiver, sender=sender, weak=False)
    try:
        remembered = bus._RECEIVERS[bus.on_start]
        remembered._entries[id(sender)] = (lambda: dead, ())
        bus.dispatch(bus.on_start, sender, event=start_event())
    finally:
        bus.on_start.disconnect(receiver, sender=sender)
    assert heard == [sender]


def test_receivers_changing_while_the_bus_looks_them_up_break_nothing():
    """Another thread may connect a receiver, or blinker drop one that died, at any moment,
    also while the bus works out who listens to a new sender: the event still goes out."""
    heard = []

    def late(sender, **_):
        heard.append("late")

    class Meddling:
        """A receiver whose comparison, made during that lookup, connects another meanwhile."""

        def __call__(self, sender, **_):
            heard.append("meddling")

        connected = False

        def __eq__(self, other):
            if not self.connected:
                self.connected = True
                bus.on_start.connect(late, sender=late, weak=False)
            return self is other

        __hash__ = object.__hash__

    def other(sender, **_):
        heard.append("other")

    meddling = Meddling()
    bus.on_start.connect(meddling, weak=False)
    bus.on_start.connect(other, weak=False)
    try:
        bus.dispatch(bus.on_start, object(), event=start_event())
    finally:
        for receiver in (meddling, other, late):
            bus.on_start.disconnect(receiver)
    assert heard == ["meddling", "other"]
