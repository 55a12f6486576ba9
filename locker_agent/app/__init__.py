"""The application layer: what the locker does with a code, a courier, an unlock.

It runs the domain's transitions and commits them (:mod:`.service`), turns codes into openings
(:mod:`.code_desk`, :mod:`.courier_desk`, :mod:`.code_gate`), drives unlocks under the safety
rules (:mod:`.unlocks`, :mod:`.safety`), and declares the ports the adapters implement
(:mod:`.ports`). It imports the domain and the contract, never an adapter.
"""
