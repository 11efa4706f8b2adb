"""Governance: quorum-signed documents on TUF, published in the transparency log.

* :mod:`~brakepedal.governance.documents`: the documents themselves (policy versions, pause
  and lift orders, training permits) as values and canonical bytes.
* ``agreement``: the agreement root: parties, their keys and the thresholds per document kind.
* ``repository``: the TUF repository that points at documents by hash, and quorum signing.
* ``view``: the governance state a verifier derives from the repository and the log.
"""
