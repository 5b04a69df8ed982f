"""The Merkle tree of RFC 9162 (Certificate Transparency 2.0), section 2.1, over SHA-256.

The audit log commits to its records with this tree: leaf ``i`` is record ``i`` and its
*leaf input* is the record's 32-byte SHA-256 hash. A signed tree head (size, root) then
fixes every record before it; an inclusion proof shows one record is in it, and a
consistency proof shows a later head only appended to an earlier one.

Two layers, which return exactly the same hashes:

* ``root``, ``inclusion_proof`` and ``consistency_proof`` take the whole list of leaf
  inputs and follow the recursive definitions of RFC 9162 2.1.1, 2.1.3.1 and 2.1.4.1
  literally. They are the reference, and fine for small trees.
* ``MerkleTree`` is built one leaf at a time, keeps the leaf hashes (32 bytes each) and a
  cache of the larger perfect subtrees, and answers ``root()`` and both proofs in
  O(log n) hashes.

``verify_inclusion`` and ``verify_consistency`` follow the verification algorithms of
RFC 9162 2.1.3.2 and 2.1.4.2 step by step and raise ``MerkleProofError`` on any failure;
they never return a verdict to be checked.

What a proof does not bind: the tree size. A proof is checked against a root, and a
root does not encode its size, so the same proof can verify for a different size whose
tree has the same shape along the path (an inclusion proof for leaf 0 reads the same in
trees of 3 and 4 leaves). The size is trusted because it is signed together with the
root in the tree head; check that signature before relying on a proof.

Pure functions, standard library only, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from appliance.errors import ApplianceError

__all__ = [
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

_HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
#: MTH({}): the hash of the empty tree is the hash of the empty string.
_EMPTY_ROOT = hashlib.sha256(b"").digest()
#: ``MerkleTree`` keeps perfect subtree hashes of this height and above (a 2**4 = 16-leaf
#: subtree and larger): n/8 extra hashes, and a smaller subtree costs at most 15 hashes.
_CACHE_MIN_HEIGHT = 4


class MerkleProofError(ApplianceError, ValueError):
    """A Merkle inclusion or consistency proof failed verification.

    The message names the check that failed. It is a ``ValueError`` too, because the
    proof, the sizes or the roots handed in are wrong, not the program.
    """


def leaf_hash(data: bytes) -> bytes:
    """Return the hash of a leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Return k, the largest power of two smaller than ``n`` (``n`` > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


# --------------------------------------------------------------------------------------
# The reference: RFC 9162 2.1.1, 2.1.3.1 and 2.1.4.1 over a list of leaf inputs.


def _mth(hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) over leaf hashes, for ``end - start`` >= 1."""
    n = end - start
    if n == 1:
        return hashes[start]
    k = _split(n)
    return node_hash(_mth(hashes, start, start + k), _mth(hashes, start + k, end))


def root(leaves: Sequence[bytes]) -> bytes:
    """Return MTH(D[n]), the root hash of the tree whose leaf inputs are ``leaves``.

    The empty tree's root is SHA-256 of the empty string.
    """
    if not leaves:
        return _EMPTY_ROOT
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return _mth(hashes, 0, len(hashes))


def _path(hashes: Sequence[bytes], m: int, start: int, end: int) -> list[bytes]:
    """PATH(m, D[start:end]) of RFC 9162 2.1.3.1."""
    n = end - start
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(hashes, m, start, start + k), _mth(hashes, start + k, end)]
    return [*_path(hashes, m - k, start + k, end), _mth(hashes, start, start + k)]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Return the inclusion proof PATH(index, D[n]) of RFC 9162 2.1.3.1.

    Raises ``ValueError`` if ``index`` is not a leaf of the tree.
    """
    _check_index(index, len(leaves))
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return _path(hashes, index, 0, len(hashes))


def _subproof(hashes: Sequence[bytes], m: int, start: int, end: int, b: bool) -> list[bytes]:
    """SUBPROOF(m, D[start:end], b) of RFC 9162 2.1.4.1."""
    n = end - start
    if m == n:
        return [] if b else [_mth(hashes, start, end)]
    k = _split(n)
    if m <= k:
        return [*_subproof(hashes, m, start, start + k, b), _mth(hashes, start + k, end)]
    return [*_subproof(hashes, m - k, start + k, end, False), _mth(hashes, start, start + k)]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the consistency proof PROOF(old_size, D[n]) of RFC 9162 2.1.4.1.

    The proof is empty when ``old_size`` is 0 or the whole tree (nothing to prove).
    Raises ``ValueError`` unless 0 <= ``old_size`` <= ``len(leaves)``.
    """
    _check_old_size(old_size, len(leaves))
    if old_size in (0, len(leaves)):
        return []
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return _subproof(hashes, old_size, 0, len(hashes), True)


def _check_index(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is out of range for a tree of {size} leaves")


def _check_old_size(old_size: int, size: int) -> None:
    if not 0 <= old_size <= size:
        raise ValueError(f"old size {old_size} is out of range for a tree of {size} leaves")


# --------------------------------------------------------------------------------------
# The incremental tree.


class MerkleTree:
    """An append-only RFC 9162 Merkle tree with O(log n) roots and proofs.

    Memory: the leaf hashes (32 bytes a leaf, in one ``bytearray``), the hashes of
    perfect subtrees of 16 leaves and more (about 4 bytes a leaf), and the compact range
    (the roots of the perfect subtrees that make up the tree, one per set bit of the
    size, largest first), which ``append`` updates and ``root`` folds.
    """

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        """Start an empty tree, then append each of ``leaves`` (leaf inputs) in order."""
        self._size = 0
        # _levels[h] holds the perfect subtree hashes of height h, concatenated, for h == 0
        # (the leaf hashes) and h >= _CACHE_MIN_HEIGHT; the others stay empty.
        self._levels: list[bytearray] = [bytearray()]
        self._compact: list[bytes] = []
        for leaf in leaves:
            self.append(leaf)

    @classmethod
    def from_leaves(cls, leaves: Sequence[bytes]) -> MerkleTree:
        """The tree of ``leaves`` (leaf inputs), built a level at a time.

        The same tree as appending each leaf, in about half the time: each level is
        hashed in one pass, with no bookkeeping per leaf. Exports build a tree of every
        record this way.
        """
        tree = cls()
        sha256 = hashlib.sha256
        level = [sha256(_LEAF_PREFIX + leaf).digest() for leaf in leaves]
        tree._size = len(level)
        tree._levels = [bytearray(b"".join(level))]
        height = 0
        while len(level) > 1:
            level = [
                sha256(_NODE_PREFIX + left + right).digest()
                for left, right in zip(level[0::2], level[1::2], strict=False)
            ]
            height += 1
            tree._levels.append(
                bytearray(b"".join(level)) if height >= _CACHE_MIN_HEIGHT else bytearray()
            )
        # The compact range: one perfect subtree per set bit of the size, largest first.
        start = 0
        for height in range(tree._size.bit_length() - 1, -1, -1):
            if tree._size >> height & 1:
                tree._compact.append(tree._perfect(start, 1 << height))
                start += 1 << height
        return tree

    @property
    def size(self) -> int:
        """The number of leaves."""
        return self._size

    def append(self, leaf_input: bytes) -> int:
        """Add a leaf whose leaf input is ``leaf_input``; return its index."""
        index = self._size
        digest = leaf_hash(leaf_input)
        self._levels[0] += digest
        height = 0
        carry = index
        while carry & 1:  # a perfect subtree of this height completes: merge it
            digest = node_hash(self._compact.pop(), digest)
            height += 1
            carry >>= 1
            if height >= _CACHE_MIN_HEIGHT:
                while len(self._levels) <= height:
                    self._levels.append(bytearray())
                self._levels[height] += digest
        self._compact.append(digest)
        self._size = index + 1
        return index

    def root(self) -> bytes:
        """Return the root hash MTH of the whole tree (as ``root`` would)."""
        if not self._compact:
            return _EMPTY_ROOT
        digest = self._compact[-1]
        for left in reversed(self._compact[:-1]):
            digest = node_hash(left, digest)
        return digest

    def inclusion_proof(self, index: int) -> list[bytes]:
        """Return the inclusion proof for leaf ``index`` (as ``inclusion_proof`` would).

        Raises ``ValueError`` if ``index`` is not a leaf of the tree.
        """
        _check_index(index, self._size)
        proof: list[bytes] = []  # collected from the root down, returned leaf first
        start, m, n = 0, index, self._size
        while n > 1:
            k = _split(n)
            if m < k:
                proof.append(self._range(start + k, n - k))
                n = k
            else:
                proof.append(self._perfect(start, k))
                start, m, n = start + k, m - k, n - k
        proof.reverse()
        return proof

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """Return the consistency proof from ``old_size`` (as ``consistency_proof`` would).

        Raises ``ValueError`` unless 0 <= ``old_size`` <= ``size``.
        """
        _check_old_size(old_size, self._size)
        if old_size in (0, self._size):
            return []
        proof: list[bytes] = []  # collected from the root down, returned bottom first
        start, m, n, whole = 0, old_size, self._size, True
        while m != n:
            k = _split(n)
            if m <= k:
                proof.append(self._range(start + k, n - k))
                n = k
            else:
                proof.append(self._perfect(start, k))
                start, m, n, whole = start + k, m - k, n - k, False
        if not whole:  # the old tree is not a left subtree of the new one: give its part
            proof.append(self._perfect(start, n))
        proof.reverse()
        return proof

    def _range(self, start: int, n: int) -> bytes:
        """MTH of the ``n`` leaves from ``start``, a range the RFC recursion produces.

        Such a range starts at a multiple of its largest perfect subtree, so it is that
        subtree followed by the same kind of range: O(log n) cached subtrees.
        """
        if n & (n - 1) == 0:
            return self._perfect(start, n)
        k = _split(n)
        return node_hash(self._perfect(start, k), self._range(start + k, n - k))

    def _perfect(self, start: int, n: int) -> bytes:
        """The hash of the perfect subtree of ``n`` (a power of two) leaves at ``start``."""
        height = n.bit_length() - 1
        if height == 0 or height >= _CACHE_MIN_HEIGHT:
            offset = (start >> height) * _HASH_SIZE
            return bytes(self._levels[height][offset : offset + _HASH_SIZE])
        half = n >> 1
        return node_hash(self._perfect(start, half), self._perfect(start + half, half))


# --------------------------------------------------------------------------------------
# Verification: RFC 9162 2.1.3.2 and 2.1.4.2.


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != _HASH_SIZE:
        raise MerkleProofError(f"{what} is {len(value)} bytes, expected {_HASH_SIZE}")


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that ``leaf`` (a leaf input) is leaf ``index`` of the tree ``root_hash``.

    Follows RFC 9162 2.1.3.2 exactly; ``tree_size`` is the size of the signed tree head
    that ``root_hash`` comes from. Returns nothing; raises ``MerkleProofError`` naming the
    check that failed: index out of range, proof too long, proof too short, a hash of the
    wrong length, or a root mismatch (with both roots in hex).
    """
    _check_hash("root hash", root_hash)
    # 1. leaf_index must be < tree_size.
    if not 0 <= index < tree_size:
        raise MerkleProofError(
            f"inclusion proof: leaf index {index} is out of range for tree size {tree_size}"
        )
    # 2. fn = leaf_index, sn = tree_size - 1. 3. r = the leaf's hash.
    fn, sn = index, tree_size - 1
    r = leaf_hash(leaf)
    # 4. For each value p in the inclusion path:
    for position, p in enumerate(proof):
        # a. If sn is 0, stop and fail.
        if sn == 0:
            raise MerkleProofError(
                f"inclusion proof too long: {len(proof)} hashes for leaf {index} of tree"
                f" size {tree_size}, which needs {position}"
            )
        _check_hash(f"inclusion proof hash {position}", p)
        # b. If LSB(fn) is set, or fn == sn: r = HASH(0x01 || p || r), then, if LSB(fn)
        #    is not set, shift fn and sn right until LSB(fn) is set or fn is 0.
        #    Otherwise r = HASH(0x01 || r || p).
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        # c. Shift fn and sn right once.
        fn >>= 1
        sn >>= 1
    # 5. sn must be 0 and r must equal root_hash.
    if sn != 0:
        raise MerkleProofError(
            f"inclusion proof too short: {len(proof)} hashes for leaf {index} of tree"
            f" size {tree_size}"
        )
    if r != root_hash:
        raise MerkleProofError(
            f"inclusion proof for leaf {index} of tree size {tree_size} leads to root"
            f" {r.hex()}, expected {root_hash.hex()}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (``new_size``, ``new_root``) extends (``old_size``, ``old_root``).

    Follows RFC 9162 2.1.4.2 exactly for 0 < ``old_size`` < ``new_size``. Outside that
    range nothing is left to prove, so the proof must be empty: equal sizes need equal
    roots, and the empty tree (``old_size`` 0) must have the empty tree's root, SHA-256
    of the empty string; it is consistent with every tree. Returns nothing; raises
    ``MerkleProofError`` naming the check that failed.
    """
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    if not 0 <= old_size <= new_size:
        raise MerkleProofError(
            f"consistency proof: sizes must satisfy 0 <= old size <= new size,"
            f" got old size {old_size} and new size {new_size}"
        )
    if old_size == new_size:
        if proof:
            raise MerkleProofError(
                f"consistency proof too long: {len(proof)} hashes for equal sizes"
                f" {old_size}, which need none"
            )
        if old_root != new_root:
            raise MerkleProofError(
                f"consistency proof: trees of the same size {old_size} have different"
                f" roots {old_root.hex()} and {new_root.hex()}"
            )
        return
    if old_size == 0:
        if proof:
            raise MerkleProofError(
                f"consistency proof too long: {len(proof)} hashes from the empty tree,"
                " which needs none"
            )
        if old_root != _EMPTY_ROOT:
            raise MerkleProofError(
                f"consistency proof: old root {old_root.hex()} of size 0 is not the"
                f" empty tree's root {_EMPTY_ROOT.hex()}"
            )
        return
    _verify_consistency_path(old_size, new_size, old_root, new_root, proof)


def _verify_consistency_path(
    first: int, second: int, first_hash: bytes, second_hash: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2 for 0 < ``first`` < ``second``, in the RFC's own names."""
    sizes = f"from size {first} to size {second}"
    # 1. An empty consistency_path fails.
    if not proof:
        raise MerkleProofError(f"consistency proof too short: empty, {sizes}")
    for position, c in enumerate(proof):
        _check_hash(f"consistency proof hash {position}", c)
    # 2. If first is an exact power of 2, prepend first_hash to the path.
    path = [first_hash, *proof] if first & (first - 1) == 0 else list(proof)
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = first - 1, second - 1
    # 4. If LSB(fn) is set, shift fn and sn right until it is not.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr = sr = the first value of the path.
    fr = sr = path[0]
    # 6. For each subsequent value c in the path:
    for position, c in enumerate(path[1:], start=1):
        # a. If sn is 0, stop and fail.
        if sn == 0:
            raise MerkleProofError(
                f"consistency proof too long: {len(proof)} hashes {sizes},"
                f" which needs {position - (len(path) - len(proof))}"
            )
        # b. If LSB(fn) is set, or fn == sn: fr = HASH(0x01 || c || fr),
        #    sr = HASH(0x01 || c || sr), then, if LSB(fn) is not set, shift fn and sn
        #    right until LSB(fn) is set or fn is 0. Otherwise sr = HASH(0x01 || sr || c).
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        # c. Shift fn and sn right once.
        fn >>= 1
        sn >>= 1
    # 7. fr must equal first_hash, sr must equal second_hash, and sn must be 0.
    if sn != 0:
        raise MerkleProofError(f"consistency proof too short: {len(proof)} hashes {sizes}")
    if fr != first_hash:
        raise MerkleProofError(
            f"consistency proof {sizes} leads to old root {fr.hex()}, expected {first_hash.hex()}"
        )
    if sr != second_hash:
        raise MerkleProofError(
            f"consistency proof {sizes} leads to new root {sr.hex()}, expected {second_hash.hex()}"
        )
