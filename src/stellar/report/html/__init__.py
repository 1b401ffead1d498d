"""The browsable HTML report (``stellar report RUN… --format html --out REPORT/``); see :mod:`.builder`."""

from stellar.report.html.builder import HtmlReport, build_html_report, check_comparable_datasets

__all__ = ["HtmlReport", "build_html_report", "check_comparable_datasets"]
