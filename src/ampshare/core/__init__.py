"""The pure core: site model, snapshots and allocation. No I/O, no asyncio, no clocks."""
