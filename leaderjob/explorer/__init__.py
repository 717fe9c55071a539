"""A read-only run explorer in the browser: `leaderjob ui`, and the daemon's `--ui`.

One direction, one idea per module::

    data (etcd, through records/history_records and the CLI's read_status/audit)
      -> model (pure: the timeline's lanes, bars, ticks, markers, overlaps)
      -> svg, render (pure: markup), upcoming (pure: fire times and DST notes)
      -> server (routes, the JSON API, the HTTP server), assets (the CSS and script)

Server-rendered HTML and SVG with a little plain script: no build step, nothing from a CDN.
"""
