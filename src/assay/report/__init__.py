"""HTML reports of a suite or a stage, and a local server that refreshes them while runs go on.

    assay report SUITE|--stage S [--out FILE.html]
    assay serve [SUITE|--stage S] [--root R] [--port P]

:func:`collect` computes the report's data record (every number it shows), :func:`render_html`
and :func:`write_html` draw it; :func:`read_report_data` reads it back from a report file.
Importing this package loads neither pandas, plotly nor jinja2: they load when a report is made.
"""

from ._cli import add_commands as add_commands
from ._cli import make_report as make_report
from ._data import collect as collect
from ._families import ReportSection as ReportSection
from ._html import read_report_data as read_report_data
from ._html import render_html as render_html
from ._html import write_html as write_html
from ._serve import serve as serve
