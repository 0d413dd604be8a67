"""The chart's high-availability modes: which peering object it makes, the access it grants, the args it passes."""

from __future__ import annotations

from llama_operator.cli.run_peering import options_from_args
from tests.unit.chart_template import FULLNAME, NAMESPACE, find, one, parsed_args, rules_of, template, template_error

HA = ("peering.enabled=true", "replicas=2")


def test_exact_namespaces_peer_per_namespace_with_a_short_lifetime() -> None:
    docs = template(*HA, "watch.namespaces={serving,research}")
    peerings = find(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["research", "serving"]
    assert not find(docs, "ClusterKopfPeering")
    peers = options_from_args(parsed_args(docs), "pod/1", 42)
    assert peers is not None
    assert (peers.name, peers.lifetime_s, peers.clusterwide) == ("llama-operator", 15, False)
    assert peers.priority == 42  # drawn at start: the chart gives every replica the same args
    for role in find(docs, "Role", FULLNAME):
        assert rules_of(role)[("kopf.dev", "kopfpeerings")] == {"get", "list", "watch", "patch"}
    assert ("kopf.dev", "clusterkopfpeerings") not in rules_of(one(docs, "ClusterRole", f"{FULLNAME}-cluster"))


def test_namespace_patterns_peer_through_one_cluster_object() -> None:
    # kopf pauses every replica while a watched namespace lacks its KopfPeering, and a pattern's namespaces are
    # not known at install time: one ClusterKopfPeering instead.
    docs = template(*HA, "rbac.clusterWide=true", "watch.namespaces={team-*}", "peering.lifetime=20")
    assert not find(docs, "KopfPeering")
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "llama-operator"
    peers = options_from_args(parsed_args(docs), "pod/1", 1)
    assert peers is not None
    assert (peers.clusterwide, peers.lifetime_s) == (True, 20)
    cluster = rules_of(one(docs, "ClusterRole", f"{FULLNAME}-cluster"))
    assert cluster[("kopf.dev", "clusterkopfpeerings")] == {"get", "list", "watch", "patch"}
    assert ("kopf.dev", "kopfpeerings") not in rules_of(one(docs, "ClusterRole", f"{FULLNAME}-workloads"))


def test_all_namespaces_peer_cluster_wide_without_the_extra_flag() -> None:
    docs = template(*HA, "rbac.clusterWide=true", "watch.allNamespaces=true")
    assert one(docs, "ClusterKopfPeering")
    args = parsed_args(docs)
    assert not args.peering_clusterwide  # kopf peers cluster-wide by itself when it watches every namespace
    assert args.peering == "llama-operator"
    assert ("kopf.dev", "clusterkopfpeerings") in rules_of(one(docs, "ClusterRole", f"{FULLNAME}-cluster"))


def test_without_peering_no_peering_object_or_access() -> None:
    docs = template()
    assert not find(docs, "KopfPeering")
    assert not find(docs, "ClusterKopfPeering")
    assert parsed_args(docs).peering is None
    role = one(docs, "Role", FULLNAME)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert ("kopf.dev", "kopfpeerings") not in rules_of(role)


def test_a_lifetime_too_short_for_keep_alives_is_refused() -> None:
    assert "peering/lifetime" in template_error(*HA, "peering.lifetime=3")
