"""Break-glass vendor access: the parts that run outside the web process.

``clock`` keeps a window's end on the kernel's boot-time clock as well as the wall clock,
``gate`` writes the nftables rule on the vendor access path, ``reaper`` is the separate
process that ends windows on time. The window rules and controller work are in
``appliance.admin.services.breakglass``; the reaper calls them.
"""
