"""The RFC 9162 Merkle tree of the audit log: known answers, proofs, and attacks on them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.audit import merkle
from appliance.audit.merkle import (
    MerkleProofError,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from appliance.errors import ApplianceError

# The test tree of the RFC 6962 reference implementation, used by CT logs ever since.
TEST_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
# Roots of its first 1..8 leaves, as published with those tests.
TEST_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# Named subtrees of the test tree (leaves numbered from 0).
H_LEAF_1 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
H_2_3 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
H_4_7 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
H_6_7 = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"
H_4_5 = "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"
H_LEAF_4 = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"

# Each property test below takes well under a second at this count.
PROPERTY_EXAMPLES = 200
# Sizes drawn evenly from 0..64, so trees past the 16-leaf subtree cache are common.
leaf_lists = st.integers(0, 64).flatmap(
    lambda n: st.lists(st.binary(max_size=16), min_size=n, max_size=n)
)
# Distinct leaves for the attacks: with two equal leaves, "leaf X is at index i" can be
# true for two indices, and a changed index would rightly still verify.
distinct_leaf_lists = st.integers(1, 64).flatmap(
    lambda n: st.lists(st.binary(max_size=16), min_size=n, max_size=n, unique=True)
)


def hexes(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def flip(data: bytes, byte: int = 0) -> bytes:
    changed = bytearray(data)
    changed[byte % len(changed)] ^= 0x01
    return bytes(changed)


def largest_power_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def inclusion_shape(index: int, size: int) -> tuple[str, ...]:
    """From the leaf up, which side each proof hash joins on (RFC 9162 2.1.3.1 PATH).

    Two (index, size) pairs with the same shape hash a proof identically, so the
    verifier cannot tell them apart; this is written from the RFC's recursion, not from
    the verifier's bit arithmetic, and serves as the oracle for changed sizes.
    """
    if size == 1:
        return ()
    k = largest_power_below(size)
    if index < k:
        return (*inclusion_shape(index, k), "right")
    return (*inclusion_shape(index - k, size - k), "left")


def consistency_shape(old: int, new: int) -> tuple[str, ...]:
    """The same oracle for consistency proofs (RFC 9162 2.1.4.1 SUBPROOF)."""

    def subproof(m: int, n: int, whole: bool) -> tuple[str, ...]:
        if m == n:
            return ("old root",) if whole else ("old part",)
        k = largest_power_below(n)
        if m <= k:
            return (*subproof(m, k, whole), "new only")
        return (*subproof(m - k, n - k, False), "both")

    if old == new:
        return ("equal",)
    if old == 0:
        return ("empty",)
    return subproof(old, new, True)


# --- API and known answers ------------------------------------------------------------


def test_public_api_is_pinned() -> None:
    assert sorted(merkle.__all__) == [
        "MerkleProofError",
        "MerkleTree",
        "consistency_proof",
        "inclusion_proof",
        "leaf_hash",
        "node_hash",
        "root",
        "verify_consistency",
        "verify_inclusion",
    ]
    assert issubclass(MerkleProofError, ValueError)
    assert issubclass(MerkleProofError, ApplianceError)


def test_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"l", b"r") == hashlib.sha256(b"\x01lr").digest()
    assert (
        leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_named_subtrees_of_the_reference_tree() -> None:
    leaf = [leaf_hash(data) for data in TEST_LEAVES]
    assert leaf[1].hex() == H_LEAF_1
    assert leaf[4].hex() == H_LEAF_4
    assert node_hash(leaf[2], leaf[3]).hex() == H_2_3
    assert node_hash(leaf[4], leaf[5]).hex() == H_4_5
    assert node_hash(leaf[6], leaf[7]).hex() == H_6_7
    assert node_hash(bytes.fromhex(H_4_5), bytes.fromhex(H_6_7)).hex() == H_4_7


def test_known_roots_of_the_reference_tree() -> None:
    assert root([]).hex() == EMPTY_ROOT
    assert MerkleTree().root().hex() == EMPTY_ROOT
    assert root(TEST_LEAVES[:1]).hex() == TEST_ROOTS[1]
    assert root(TEST_LEAVES).hex() == TEST_ROOTS[8]
    tree = MerkleTree()
    for size, leaf in enumerate(TEST_LEAVES, start=1):
        tree.append(leaf)
        assert root(TEST_LEAVES[:size]).hex() == TEST_ROOTS[size]
        assert tree.root().hex() == TEST_ROOTS[size]


@pytest.mark.parametrize(
    ("index", "size", "expected"),
    [
        (0, 1, []),
        (0, 8, [H_LEAF_1, H_2_3, H_4_7]),
        (5, 8, [H_LEAF_4, H_6_7, TEST_ROOTS[4]]),
        (2, 3, [TEST_ROOTS[2]]),
        (1, 5, [TEST_ROOTS[1], H_2_3, H_LEAF_4]),
    ],
)
def test_known_inclusion_proofs(index: int, size: int, expected: list[str]) -> None:
    leaves = TEST_LEAVES[:size]
    assert hexes(inclusion_proof(leaves, index)) == expected
    assert hexes(MerkleTree(leaves).inclusion_proof(index)) == expected
    proof = [bytes.fromhex(h) for h in expected]
    verify_inclusion(leaves[index], index, size, proof, bytes.fromhex(TEST_ROOTS[size]))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (1, 1, []),
        (1, 8, [H_LEAF_1, H_2_3, H_4_7]),
        (6, 8, [H_4_5, H_6_7, TEST_ROOTS[4]]),
        (2, 5, [H_2_3, H_LEAF_4]),
    ],
)
def test_known_consistency_proofs(old: int, new: int, expected: list[str]) -> None:
    leaves = TEST_LEAVES[:new]
    assert hexes(consistency_proof(leaves, old)) == expected
    assert hexes(MerkleTree(leaves).consistency_proof(old)) == expected
    proof = [bytes.fromhex(h) for h in expected]
    verify_consistency(
        old, new, bytes.fromhex(TEST_ROOTS[old]), bytes.fromhex(TEST_ROOTS[new]), proof
    )


# --- Properties -----------------------------------------------------------------------


@settings(max_examples=PROPERTY_EXAMPLES)
@given(leaves=leaf_lists)
def test_incremental_tree_matches_the_reference(leaves: list[bytes]) -> None:
    tree = MerkleTree()
    for index, leaf in enumerate(leaves):
        assert tree.append(leaf) == index
        assert tree.size == index + 1
        assert tree.root() == root(leaves[: index + 1])
    assert MerkleTree(leaves).root() == tree.root()
    for index in range(len(leaves)):
        assert tree.inclusion_proof(index) == inclusion_proof(leaves, index)
    for old_size in range(len(leaves) + 1):
        assert tree.consistency_proof(old_size) == consistency_proof(leaves, old_size)


def test_incremental_tree_matches_the_reference_for_every_size_to_70() -> None:
    leaves = [index.to_bytes(2, "big") for index in range(70)]
    tree = MerkleTree()
    for size in range(71):
        assert tree.size == size
        assert tree.root() == root(leaves[:size])
        for index in range(size):
            assert tree.inclusion_proof(index) == inclusion_proof(leaves[:size], index)
        for old_size in range(size + 1):
            assert tree.consistency_proof(old_size) == consistency_proof(leaves[:size], old_size)
        if size < len(leaves):
            tree.append(leaves[size])


@settings(max_examples=PROPERTY_EXAMPLES)
@given(leaves=leaf_lists)
def test_every_inclusion_proof_verifies(leaves: list[bytes]) -> None:
    root_hash = root(leaves)
    for index, leaf in enumerate(leaves):
        verify_inclusion(leaf, index, len(leaves), inclusion_proof(leaves, index), root_hash)


@settings(max_examples=PROPERTY_EXAMPLES)
@given(leaves=leaf_lists)
def test_every_consistency_proof_verifies(leaves: list[bytes]) -> None:
    new_root = root(leaves)
    for old_size in range(len(leaves) + 1):
        proof = consistency_proof(leaves, old_size)
        verify_consistency(old_size, len(leaves), root(leaves[:old_size]), new_root, proof)


@settings(max_examples=PROPERTY_EXAMPLES)
@given(leaves=distinct_leaf_lists, data=st.data())
def test_any_change_to_an_inclusion_proof_is_caught(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size = len(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    leaf = leaves[index]
    proof = inclusion_proof(leaves, index)
    root_hash = root(leaves)
    verify_inclusion(leaf, index, size, proof, root_hash)

    def rejected(
        leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
    ) -> None:
        with pytest.raises(MerkleProofError):
            verify_inclusion(leaf, index, size, proof, root_hash)

    for position in range(len(proof)):
        for byte in (0, 31):
            changed = list(proof)
            changed[position] = flip(proof[position], byte)
            rejected(leaf, index, size, changed, root_hash)
        rejected(leaf, index, size, proof[:position] + proof[position + 1 :], root_hash)
        rejected(leaf, index, size, [*proof[:position], proof[position][:31]], root_hash)
    rejected(leaf, index, size, [*proof, proof[0] if proof else root_hash], root_hash)
    rejected(leaf + b"\x00", index, size, proof, root_hash)
    rejected(b"x" if leaf != b"x" else b"y", index, size, proof, root_hash)
    rejected(leaf_hash(leaf), index, size, proof, root_hash)
    for other in (-1, *range(size + 2)):
        if other != index:
            rejected(leaf, other, size, proof, root_hash)
    rejected(leaf, index, size, proof, flip(root_hash))
    rejected(leaf, index, size, proof, root_hash[:31])
    # The size: the verifier is fooled exactly when another size has the same shape along
    # the path (a root does not encode its size; the signed tree head binds the two).
    for other_size in range(-1, size + 70):
        if other_size == size:
            continue
        same_shape = index < other_size and (
            inclusion_shape(index, other_size) == inclusion_shape(index, size)
        )
        if same_shape:
            verify_inclusion(leaf, index, other_size, proof, root_hash)
        else:
            rejected(leaf, index, other_size, proof, root_hash)


@settings(max_examples=PROPERTY_EXAMPLES)
@given(leaves=distinct_leaf_lists, data=st.data())
def test_any_change_to_a_consistency_proof_is_caught(
    leaves: list[bytes], data: st.DataObject
) -> None:
    new_size = len(leaves)
    old_size = data.draw(st.integers(1, new_size), label="old_size")
    proof = consistency_proof(leaves, old_size)
    old_root, new_root = root(leaves[:old_size]), root(leaves)
    verify_consistency(old_size, new_size, old_root, new_root, proof)

    def rejected(old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> None:
        with pytest.raises(MerkleProofError):
            verify_consistency(old, new, old_root, new_root, proof)

    for position in range(len(proof)):
        for byte in (0, 31):
            changed = list(proof)
            changed[position] = flip(proof[position], byte)
            rejected(old_size, new_size, old_root, new_root, changed)
        shorter = proof[:position] + proof[position + 1 :]
        rejected(old_size, new_size, old_root, new_root, shorter)
    rejected(old_size, new_size, old_root, new_root, [*proof, old_root])
    rejected(old_size, new_size, old_root, new_root, [new_root, *proof])
    rejected(old_size, new_size, flip(old_root), new_root, proof)
    rejected(old_size, new_size, old_root, flip(new_root), proof)
    if old_root != new_root:
        rejected(old_size, new_size, new_root, old_root, proof)
    rejected(old_size, new_size, old_root[:31], new_root, proof)
    # Changed sizes: fooled exactly when the other sizes give the proof the same shape.
    for other_old in range(-1, new_size + 3):
        for other_new in range(-1, new_size + 9):
            if (other_old, other_new) == (old_size, new_size):
                continue
            same_shape = 0 <= other_old <= other_new and (
                consistency_shape(other_old, other_new) == consistency_shape(old_size, new_size)
            )
            if same_shape:
                verify_consistency(other_old, other_new, old_root, new_root, proof)
            else:
                rejected(other_old, other_new, old_root, new_root, proof)


# --- Edge cases, one test each ----------------------------------------------------------


def test_size_is_not_bound_by_an_inclusion_proof() -> None:
    """Leaf 0 takes the same path in trees of 3 and 4 leaves: RFC 9162 cannot tell."""
    leaves = TEST_LEAVES[:3]
    proof = inclusion_proof(leaves, 0)
    verify_inclusion(leaves[0], 0, 4, proof, root(leaves))


def test_inclusion_errors_say_which_check_failed() -> None:
    leaves = TEST_LEAVES
    root_hash = root(leaves)
    proof = inclusion_proof(leaves, 3)
    with pytest.raises(MerkleProofError, match="out of range"):
        verify_inclusion(leaves[3], 8, 8, proof, root_hash)
    with pytest.raises(MerkleProofError, match="out of range"):
        verify_inclusion(leaves[0], 0, 0, [], root(()))
    with pytest.raises(MerkleProofError, match="too long: 4 hashes .* needs 3"):
        verify_inclusion(leaves[3], 3, 8, [*proof, proof[0]], root_hash)
    with pytest.raises(MerkleProofError, match="too short"):
        verify_inclusion(leaves[3], 3, 8, proof[:2], root_hash)
    with pytest.raises(MerkleProofError, match="hash 1 is 31 bytes, expected 32"):
        verify_inclusion(leaves[3], 3, 8, [proof[0], proof[1][:31], proof[2]], root_hash)
    wrong = flip(root_hash)
    with pytest.raises(MerkleProofError, match=f"{root_hash.hex()}, expected {wrong.hex()}"):
        verify_inclusion(leaves[3], 3, 8, proof, wrong)


def test_consistency_edge_cases() -> None:
    leaves = TEST_LEAVES
    empty, r4, r8 = root([]), root(leaves[:4]), root(leaves)
    verify_consistency(0, 0, empty, empty, [])
    verify_consistency(0, 8, empty, r8, [])
    verify_consistency(8, 8, r8, r8, [])
    with pytest.raises(MerkleProofError, match="not the empty tree's root"):
        verify_consistency(0, 8, r4, r8, [])
    with pytest.raises(MerkleProofError, match="too long: 1 hashes from the empty tree"):
        verify_consistency(0, 8, empty, r8, [r4])
    with pytest.raises(MerkleProofError, match="same size 8 have different roots"):
        verify_consistency(8, 8, r8, r4, [])
    with pytest.raises(MerkleProofError, match="too long: 1 hashes for equal sizes"):
        verify_consistency(8, 8, r8, r8, [r8])
    with pytest.raises(MerkleProofError, match="old size <= new size"):
        verify_consistency(8, 4, r8, r4, consistency_proof(leaves, 4))
    with pytest.raises(MerkleProofError, match="too short: empty"):
        verify_consistency(4, 8, r4, r8, [])
    # A power-of-two old tree is a left subtree: its root is not repeated in the proof.
    proof = consistency_proof(leaves, 4)
    assert hexes(proof) == [H_4_7]
    verify_consistency(4, 8, r4, r8, proof)
    with pytest.raises(MerkleProofError, match="leads to new root"):
        verify_consistency(4, 8, r4, r8, [r4])
    with pytest.raises(MerkleProofError, match="leads to old root"):
        verify_consistency(6, 8, r4, r8, consistency_proof(leaves, 6))


def test_proof_requests_outside_the_tree_are_refused() -> None:
    tree = MerkleTree(TEST_LEAVES[:3])
    for bad_index in (-1, 3):
        with pytest.raises(ValueError, match="out of range for a tree of 3 leaves"):
            tree.inclusion_proof(bad_index)
        with pytest.raises(ValueError, match="out of range"):
            inclusion_proof(TEST_LEAVES[:3], bad_index)
    for bad_size in (-1, 4):
        with pytest.raises(ValueError, match="old size"):
            tree.consistency_proof(bad_size)
        with pytest.raises(ValueError, match="old size"):
            consistency_proof(TEST_LEAVES[:3], bad_size)
    assert tree.consistency_proof(0) == consistency_proof(TEST_LEAVES[:3], 0) == []
    with pytest.raises(ValueError, match="out of range"):
        MerkleTree().inclusion_proof(0)


def test_a_million_leaves(capsys: pytest.CaptureFixture[str]) -> None:
    """Proofs from a 1,000,000-leaf tree verify; timings are printed, not asserted."""
    size, old_size = 1_000_000, 999_000
    started = time.perf_counter()
    tree = MerkleTree()
    old_root = b""
    for index in range(size):
        tree.append(hashlib.sha256(index.to_bytes(8, "big")).digest())
        if index + 1 == old_size:
            old_root = tree.root()
    built = time.perf_counter()
    new_root = tree.root()
    inclusion = tree.inclusion_proof(size - 1)
    proved_inclusion = time.perf_counter()
    consistency = tree.consistency_proof(old_size)
    proved_consistency = time.perf_counter()
    last_leaf = hashlib.sha256((size - 1).to_bytes(8, "big")).digest()
    verify_inclusion(last_leaf, size - 1, size, inclusion, new_root)
    verify_consistency(old_size, size, old_root, new_root, consistency)
    verified = time.perf_counter()
    with capsys.disabled():
        print(
            f"\n1,000,000 leaves: build {built - started:.2f} s,"
            f" root + inclusion proof {1e3 * (proved_inclusion - built):.3f} ms"
            f" ({len(inclusion)} hashes),"
            f" consistency proof from {old_size}"
            f" {1e3 * (proved_consistency - proved_inclusion):.3f} ms ({len(consistency)} hashes),"
            f" both verified in {1e3 * (verified - proved_consistency):.3f} ms"
        )
    # A spot check against the reference on a prefix that is cheap to recompute.
    prefix = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(1000)]
    assert MerkleTree(prefix).inclusion_proof(777) == inclusion_proof(prefix, 777)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 15, 16, 17, 31, 32, 33, 100, 257])
def test_a_tree_built_a_level_at_a_time_is_the_appended_tree(size: int) -> None:
    """Issue 15: exports build their tree in bulk; it must be the same tree, down to the
    proofs, and keep growing like one."""
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(size + 5)]
    bulk, appended = MerkleTree.from_leaves(leaves[:size]), MerkleTree(leaves[:size])
    assert bulk.size == size
    assert bulk.root() == appended.root() == root(leaves[:size])
    for index in range(size):
        assert bulk.inclusion_proof(index) == inclusion_proof(leaves[:size], index)
    for old in range(size + 1):
        assert bulk.consistency_proof(old) == consistency_proof(leaves[:size], old)
    for leaf in leaves[size:]:
        bulk.append(leaf)
    assert bulk.root() == root(leaves)
    assert bulk.inclusion_proof(size) == inclusion_proof(leaves, size)
