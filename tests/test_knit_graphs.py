# ruff: noqa: E501
"""knit.graphs: the exact DOT text of ``knit data lineage`` and ``knit plan graph`` (spec §8).

The expected documents are written out by hand from the spec; the local zone is Asia/Tokyo (+09:00).
"""

import time

import pytest

from knit.graphs import _local_time, data_lineage, plan_graph


@pytest.fixture(autouse=True)
def tokyo(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class NotFound(Exception):
    status = 404


class FakeSource:
    def __init__(self, data=(), runs=(), plans=()):
        self.data = {d["knitId"]: d for d in data}
        self.runs = {r["runId"]: r for r in runs}
        self.plans = {p["planId"]: p for p in plans}

    def get_data(self, knit_id):
        if knit_id not in self.data:
            raise NotFound(f"data not found: {knit_id}")
        return self.data[knit_id]

    def get_run(self, run_id):
        return self.runs[run_id]

    def get_plan(self, plan_id):
        return self.plans[plan_id]


def run(run_id, status, updated, plan, inputs=(), outputs=(), log=None):
    return {
        "runId": run_id,
        "status": status,
        "updatedAt": updated,
        "plan": plan,
        "inputs": [{"path": path, "tags": [], "knitId": knit_id} for path, knit_id in inputs],
        "outputs": [{"path": path, "tags": [], "knitId": knit_id} for path, knit_id in outputs],
        "log": None if log is None else {"tags": [], "knitId": log},
    }


def summary(detail):
    return {key: detail[key] for key in ("runId", "status", "updatedAt", "plan")}


def data(knit_id, tags, made_by, path=None, used_by=()):
    """A DataDetail; without ``path`` it is the log of ``made_by``."""
    upstream = {"mountpoint": {"path": path, "tags": []}} if path else {"log": {"tags": []}}
    return {
        "knitId": knit_id,
        "tags": tags,
        "upstream": upstream | {"run": summary(made_by)},
        "downstreams": [{"mountpoint": {"path": p, "tags": []}, "run": summary(r)} for p, r in used_by],
        "nomination": [],
    }


HEAD = "digraph G {\n\tnode [shape=record fontsize=10]\n\tedge [fontsize=10]\n\n"
ROOT0 = '\t"root#0"[shape=Mdiamond];\n'
UPLOADED = {"planId": "plan-upload", "name": "knit#uploaded"}

# -- (1) an uploaded Data -----------------------------------------------------------------------------

RUN_U = run("run-u", "done", "2024-03-06T09:25:16.586+00:00", UPLOADED, outputs=[("/upload", "data-u")])
DATA_U = data(
    "data-u",
    ["format:csv", "knit#id:data-u", "knit#timestamp:2024-03-06T09:25:16.586+00:00", "project:demo"],
    RUN_U,
    "/upload",
)


def test_uploaded_data_is_rooted_at_its_upload_run():
    assert data_lineage(FakeSource([DATA_U], [RUN_U]), "data-u") == (
        "digraph G {\n"
        "\tnode [shape=record fontsize=10]\n"
        "\tedge [fontsize=10]\n"
        "\n"
        '\t"ddata-u"[\n'
        "\t\tshape=none\n"
        '\t\tcolor="#1c9930"\n'
        "\t\tlabel=<\n"
        '\t\t\t<TABLE CELLSPACING="0">\n'
        '\t\t\t\t<TR><TD BGCOLOR="#1c9930"><FONT COLOR="#FFFFFF"><B>Data</B></FONT></TD><TD BGCOLOR="#d4ecc6">knit#id: data-u</TD></TR>\n'
        '\t\t\t\t<TR><TD COLSPAN="2"><FONT POINT-SIZE="8">2024-03-06T18:25:16.586+09:00</FONT></TD></TR>\n'
        '\t\t\t\t<TR><TD COLSPAN="2"><B>format</B>:csv<BR/><B>project</B>:demo</TD></TR>\n'
        "\t\t\t</TABLE>\n"
        "\t\t>\n"
        "\t];\n"
        '\t"rrun-u"[\n'
        "\t\tshape=none\n"
        '\t\tcolor="#FFA500"\n'
        "\t\tlabel=<\n"
        '\t\t\t<TABLE CELLSPACING="0">\n'
        '\t\t\t\t<TR><TD BGCOLOR="#FFA500"><FONT COLOR="#FFFFFF"><B>Run</B></FONT></TD><TD><FONT COLOR="#007700"><B>done</B></FONT></TD><TD BGCOLOR="#FFFFFF">id: run-u</TD></TR>\n'
        '\t\t\t\t<TR><TD COLSPAN="3"><FONT POINT-SIZE="8">last updated: 2024-03-06T18:25:16.586+09:00</FONT></TD></TR>\n'
        '\t\t\t\t<TR><TD COLSPAN="3">knit#uploaded</TD></TR>\n'
        "\t\t\t</TABLE>\n"
        "\t\t>\n"
        "\t];\n"
        '\t"root#0"[shape=Mdiamond];\n'
        "\n"
        '\t"rrun-u" -> "ddata-u" [label="/upload"];\n'
        '\t"root#0" -> "rrun-u";\n'
        "\n"
        "}"
    )


# -- (2), (3) upload -> A -> R -> B (+ log L) -> S -> C ------------------------------------------------

TRAINER = {"planId": "plan-r", "image": "repo.invalid/trainer:1.0"}
SCORER = {"planId": "plan-s", "image": "repo.invalid/scorer:2"}
RUN_UP = run("run-up", "done", "2024-03-06T09:25:16.580+00:00", UPLOADED, outputs=[("/upload", "data-a")])
RUN_R = run(
    "run-r",
    "done",
    "2024-03-06T10:00:00.1+00:00",
    TRAINER,
    inputs=[("/in/dataset", "data-a")],
    outputs=[("/out/model", "data-b")],
    log="data-l",
)
RUN_S = run(
    "run-s",
    "running",
    "2024-03-06T11:00:00+00:00",
    SCORER,
    inputs=[("/in/model", "data-b")],
    outputs=[("/out/score", "data-c")],
)
STAMP_A = "knit#timestamp:2024-03-06T09:25:16.586+00:00"
STAMP_R = "knit#timestamp:2024-03-06T10:00:00+00:00"
DATA_A = data("data-a", ["knit#id:data-a", STAMP_A, "type:dataset"], RUN_UP, "/upload", [("/in/dataset", RUN_R)])
DATA_B = data("data-b", ["knit#id:data-b", STAMP_R, "type:model"], RUN_R, "/out/model", [("/in/model", RUN_S)])
DATA_L = data("data-l", ["knit#id:data-l", STAMP_R, "type:log"], RUN_R)
DATA_C = data("data-c", ["knit#id:data-c", "knit#transient:processing", "type:score"], RUN_S, "/out/score")
CHAIN = FakeSource([DATA_A, DATA_B, DATA_L, DATA_C], [RUN_UP, RUN_R, RUN_S])

NODE_A = (
    '\t"ddata-a"[\n'
    "\t\tshape=none\n"
    '\t\tcolor="#1c9930"\n'
    "\t\tlabel=<\n"
    '\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#1c9930"><FONT COLOR="#FFFFFF"><B>Data</B></FONT></TD><TD BGCOLOR="#FFFFFF">knit#id: data-a</TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><FONT POINT-SIZE="8">2024-03-06T18:25:16.586+09:00</FONT></TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><B>type</B>:dataset</TD></TR>\n'
    "\t\t\t</TABLE>\n"
    "\t\t>\n"
    "\t];\n"
)
NODE_A_START = (
    '\t"ddata-a"[\n'
    "\t\tshape=none\n"
    '\t\tcolor="#1c9930"\n'
    "\t\tlabel=<\n"
    '\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#1c9930"><FONT COLOR="#FFFFFF"><B>Data</B></FONT></TD><TD BGCOLOR="#d4ecc6">knit#id: data-a</TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><FONT POINT-SIZE="8">2024-03-06T18:25:16.586+09:00</FONT></TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><B>type</B>:dataset</TD></TR>\n'
    "\t\t\t</TABLE>\n"
    "\t\t>\n"
    "\t];\n"
)
NODE_B = (
    '\t"ddata-b"[\n'
    "\t\tshape=none\n"
    '\t\tcolor="#1c9930"\n'
    "\t\tlabel=<\n"
    '\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#1c9930"><FONT COLOR="#FFFFFF"><B>Data</B></FONT></TD><TD BGCOLOR="#FFFFFF">knit#id: data-b</TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><FONT POINT-SIZE="8">2024-03-06T19:00:00+09:00</FONT></TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><B>type</B>:model</TD></TR>\n'
    "\t\t\t</TABLE>\n"
    "\t\t>\n"
    "\t];\n"
)
NODE_B_START = (
    '\t"ddata-b"[\n'
    "\t\tshape=none\n"
    '\t\tcolor="#1c9930"\n'
    "\t\tlabel=<\n"
    '\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#1c9930"><FONT COLOR="#FFFFFF"><B>Data</B></FONT></TD><TD BGCOLOR="#d4ecc6">knit#id: data-b</TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><FONT POINT-SIZE="8">2024-03-06T19:00:00+09:00</FONT></TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><B>type</B>:model</TD></TR>\n'
    "\t\t\t</TABLE>\n"
    "\t\t>\n"
    "\t];\n"
)
NODE_L = (
    '\t"ddata-l"[\n'
    "\t\tshape=none\n"
    '\t\tcolor="#1c9930"\n'
    "\t\tlabel=<\n"
    '\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#1c9930"><FONT COLOR="#FFFFFF"><B>Data</B></FONT></TD><TD BGCOLOR="#FFFFFF">knit#id: data-l</TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><FONT POINT-SIZE="8">2024-03-06T19:00:00+09:00</FONT></TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><B>type</B>:log</TD></TR>\n'
    "\t\t\t</TABLE>\n"
    "\t\t>\n"
    "\t];\n"
)
NODE_C = (
    '\t"ddata-c"[\n'
    "\t\tshape=none\n"
    '\t\tcolor="#1c9930"\n'
    "\t\tlabel=<\n"
    '\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#1c9930"><FONT COLOR="#FFFFFF"><B>Data</B></FONT></TD><TD BGCOLOR="#FFFFFF">knit#id: data-c</TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><FONT POINT-SIZE="8">knit#transient:processing</FONT></TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="2"><B>type</B>:score</TD></TR>\n'
    "\t\t\t</TABLE>\n"
    "\t\t>\n"
    "\t];\n"
)
NODE_UP = (
    '\t"rrun-up"[\n'
    "\t\tshape=none\n"
    '\t\tcolor="#FFA500"\n'
    "\t\tlabel=<\n"
    '\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#FFA500"><FONT COLOR="#FFFFFF"><B>Run</B></FONT></TD><TD><FONT COLOR="#007700"><B>done</B></FONT></TD><TD BGCOLOR="#FFFFFF">id: run-up</TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="3"><FONT POINT-SIZE="8">last updated: 2024-03-06T18:25:16.58+09:00</FONT></TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="3">knit#uploaded</TD></TR>\n'
    "\t\t\t</TABLE>\n"
    "\t\t>\n"
    "\t];\n"
)
NODE_R = (
    '\t"rrun-r"[\n'
    "\t\tshape=none\n"
    '\t\tcolor="#FFA500"\n'
    "\t\tlabel=<\n"
    '\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#FFA500"><FONT COLOR="#FFFFFF"><B>Run</B></FONT></TD><TD><FONT COLOR="#007700"><B>done</B></FONT></TD><TD BGCOLOR="#FFFFFF">id: run-r</TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="3"><FONT POINT-SIZE="8">last updated: 2024-03-06T19:00:00.1+09:00</FONT></TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="3">image = repo.invalid/trainer:1.0</TD></TR>\n'
    "\t\t\t</TABLE>\n"
    "\t\t>\n"
    "\t];\n"
)
NODE_S = (
    '\t"rrun-s"[\n'
    "\t\tshape=none\n"
    '\t\tcolor="#FFA500"\n'
    "\t\tlabel=<\n"
    '\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#FFA500"><FONT COLOR="#FFFFFF"><B>Run</B></FONT></TD><TD>running</TD><TD BGCOLOR="#FFFFFF">id: run-s</TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="3"><FONT POINT-SIZE="8">last updated: 2024-03-06T20:00:00+09:00</FONT></TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="3">image = repo.invalid/scorer:2</TD></TR>\n'
    "\t\t\t</TABLE>\n"
    "\t\t>\n"
    "\t];\n"
)
R_TO_B = '\t"rrun-r" -> "ddata-b" [label="/out/model"];\n'
R_TO_L = '\t"rrun-r" -> "ddata-l" [label="(log)"];\n'
A_TO_R = '\t"ddata-a" -> "rrun-r" [label="/in/dataset"];\n'
UP_TO_A = '\t"rrun-up" -> "ddata-a" [label="/upload"];\n'
ROOT_TO_UP = '\t"root#0" -> "rrun-up";\n'
B_TO_S = '\t"ddata-b" -> "rrun-s" [label="/in/model"];\n'
S_TO_C = '\t"rrun-s" -> "ddata-c" [label="/out/score"];\n'


def test_chain_both_directions_to_the_ends():
    # upstream first: B, its run R (then R's log L and input A), A's upload run; then downstream: S and C
    nodes = NODE_B_START + NODE_L + NODE_A + NODE_C + NODE_R + NODE_UP + NODE_S + ROOT0
    edges = R_TO_B + R_TO_L + A_TO_R + UP_TO_A + ROOT_TO_UP + B_TO_S + S_TO_C
    assert data_lineage(CHAIN, "data-b", depth=None) == HEAD + nodes + "\n" + edges + "\n}"


def test_one_step_each_way_leaves_the_upload_out():
    nodes = NODE_B_START + NODE_L + NODE_A + NODE_C + NODE_R + NODE_S
    edges = R_TO_B + R_TO_L + A_TO_R + B_TO_S + S_TO_C
    assert data_lineage(CHAIN, "data-b", depth=1) == HEAD + nodes + "\n" + edges + "\n}"


def test_upstream_only():
    nodes = NODE_B_START + NODE_L + NODE_A + NODE_R + NODE_UP + ROOT0
    edges = R_TO_B + R_TO_L + A_TO_R + UP_TO_A + ROOT_TO_UP
    assert data_lineage(CHAIN, "data-b", downstream=False, depth=None) == HEAD + nodes + "\n" + edges + "\n}"


def test_downstream_only():
    expected = HEAD + NODE_B_START + NODE_C + NODE_S + "\n" + B_TO_S + S_TO_C + "\n}"
    assert data_lineage(CHAIN, "data-b", upstream=False, depth=None) == expected


def test_downstream_depth_one_against_all():
    # from A: one step reaches R and its products B and L; all steps go on through S to C
    one = HEAD + NODE_A_START + NODE_B + NODE_L + NODE_R + "\n" + A_TO_R + R_TO_B + R_TO_L + "\n}"
    assert data_lineage(CHAIN, "data-a", upstream=False, depth=1) == one
    nodes = NODE_A_START + NODE_B + NODE_L + NODE_C + NODE_R + NODE_S
    edges = A_TO_R + R_TO_B + R_TO_L + B_TO_S + S_TO_C
    assert data_lineage(CHAIN, "data-a", upstream=False, depth=None) == HEAD + nodes + "\n" + edges + "\n}"


def test_the_default_depth_is_three_hops():
    assert data_lineage(CHAIN, "data-c", downstream=False) == data_lineage(CHAIN, "data-c", downstream=False, depth=3)
    # C <- S <- B <- R <- A <- upload: the third hop is the one from A to its upload run
    assert '"rrun-up"' not in data_lineage(CHAIN, "data-c", downstream=False, depth=2)
    assert '"root#0" -> "rrun-up";' in data_lineage(CHAIN, "data-c", downstream=False, depth=3)


# -- (4), (5) escaping and run status ------------------------------------------------------------------

BEFORE_STATUS = (
    "digraph G {\n"
    "\tnode [shape=record fontsize=10]\n"
    "\tedge [fontsize=10]\n"
    "\n"
    '\t"ddata-x"[\n'
    "\t\tshape=none\n"
    '\t\tcolor="#1c9930"\n'
    "\t\tlabel=<\n"
    '\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#1c9930"><FONT COLOR="#FFFFFF"><B>Data</B></FONT></TD><TD BGCOLOR="#d4ecc6">knit#id: data-x</TD></TR>\n'
    "\t\t\t\t\n"
    '\t\t\t\t<TR><TD COLSPAN="2"><B>a&amp;b</B>:c<BR/><B>note</B>:&lt;&amp;&gt;&#34;&#39;</TD></TR>\n'
    "\t\t\t</TABLE>\n"
    "\t\t>\n"
    "\t];\n"
    '\t"rrun-x"[\n'
    "\t\tshape=none\n"
    '\t\tcolor="#FFA500"\n'
    "\t\tlabel=<\n"
    '\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#FFA500"><FONT COLOR="#FFFFFF"><B>Run</B></FONT></TD><TD>'
)
AFTER_STATUS = (
    '</TD><TD BGCOLOR="#FFFFFF">id: run-x</TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="3"><FONT POINT-SIZE="8">last updated: 2024-03-06T18:25:16+09:00</FONT></TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="3">image = repo.invalid/a&lt;b&gt;:1</TD></TR>\n'
    "\t\t\t</TABLE>\n"
    "\t\t>\n"
    "\t];\n"
    '\t"root#0"[shape=Mdiamond];\n'
    "\n"
    '\t"rrun-x" -> "ddata-x" [label="/out/a&b"];\n'
    '\t"root#0" -> "rrun-x";\n'
    "\n"
    "}"
)


def world_x(status):
    """A Data without timestamp whose tags need escaping, made by an input-less run in ``status``."""
    plan = {"planId": "plan-x", "image": "repo.invalid/a<b>:1"}
    made_by = run("run-x", status, "2024-03-06T09:25:16+00:00", plan, outputs=[("/out/a&b", "data-x")])
    return FakeSource([data("data-x", ["a&b:c", "knit#id:data-x", "note:<&>\"'"], made_by, "/out/a&b")], [made_by])


def test_labels_are_html_escaped_and_edge_labels_are_not():
    expected = BEFORE_STATUS + '<FONT COLOR="#007700"><B>done</B></FONT>' + AFTER_STATUS
    assert data_lineage(world_x("done"), "data-x") == expected


@pytest.mark.parametrize(
    ("status", "cell"),
    [
        ("deactivated", '<FONT COLOR="gray"><B>deactivated</B></FONT>'),
        ("waiting", "waiting"),
        ("ready", "ready"),
        ("starting", "starting"),
        ("running", "running"),
        ("completing", '<FONT COLOR="#007700"><B>completing</B></FONT>'),
        ("done", '<FONT COLOR="#007700"><B>done</B></FONT>'),
        ("aborting", '<FONT COLOR="red"><B>aborting</B></FONT>'),
        ("failed", '<FONT COLOR="red"><B>failed</B></FONT>'),
        ("invalidated", "invalidated"),
    ],
)
def test_run_status_colours(status, cell):
    assert data_lineage(world_x(status), "data-x") == BEFORE_STATUS + cell + AFTER_STATUS


# -- (6) plan graph ------------------------------------------------------------------------------------

SUMMARY_A = {"planId": "plan-a", "image": "repo.invalid/prep:1", "annotations": ["owner=alice", "stage=<prep>"]}
SUMMARY_B = {"planId": "plan-b", "image": "repo.invalid/train:2"}
PLAN_A = SUMMARY_A | {
    "inputs": [{"path": "/in/raw", "tags": ["type:raw"], "upstreams": []}],
    "outputs": [
        {
            "path": "/out/clean",
            "tags": ["type:clean"],
            "downstreams": [{"plan": SUMMARY_B, "mountpoint": {"path": "/in/clean", "tags": ["type:clean"]}}],
        }
    ],
    "log": {
        "tags": ["type:log"],
        "downstreams": [{"plan": SUMMARY_B, "mountpoint": {"path": "/in/log", "tags": ["type:log"]}}],
    },
    "active": True,
}
PLAN_B = SUMMARY_B | {
    "inputs": [
        {
            "path": "/in/clean",
            "tags": ["type:clean"],
            "upstreams": [{"plan": SUMMARY_A, "mountpoint": {"path": "/out/clean", "tags": ["type:clean"]}}],
        },
        {"path": "/in/log", "tags": ["type:log"], "upstreams": [{"plan": SUMMARY_A, "log": {"tags": ["type:log"]}}]},
    ],
    "outputs": [{"path": "/out/model", "tags": ["type:model"], "downstreams": []}],
    "active": False,
}
PLANS = FakeSource(plans=[PLAN_A, PLAN_B])


def cluster_a(id_background):
    return (
        '\tsubgraph { cluster=true; style=solid; penwidth=0.3; color="#DAA520"; margin="0,0";\n'
        '\t\t"pplan-a@/in/raw"[shape=point, color="#1c9930"];\n'
        '\t\t"pplan-a@/in/raw" -> "pplan-a" [label="/in/raw", weight=10, penwidth=0.3];\n'
        '\t\t"pplan-a"[\n'
        "\t\t\tshape=none\n"
        '\t\t\tcolor="#DAA520"\n'
        "\t\t\tlabel=<\n"
        '\t\t\t\t<TABLE CELLSPACING="0">\n'
        '\t\t\t\t\t<TR><TD BGCOLOR="#DAA520"><FONT COLOR="#FFFFFF"><B>Plan</B></FONT></TD><TD><FONT COLOR="#007700">active</FONT></TD><TD BGCOLOR="'
        + id_background
        + '">id: plan-a</TD></TR>\n'
        '\t\t\t\t\t<TR><TD COLSPAN="3">image = repo.invalid/prep:1</TD></TR>\n'
        '\t\t\t\t\t<TR><TD COLSPAN="3"><B>owner</B>=alice<BR/><B>stage</B>=&lt;prep&gt;</TD></TR>\n'
        "\t\t\t\t</TABLE>\n"
        "\t\t\t>\n"
        "\t\t];\n"
        '\t\t"pplan-a@/out/clean"[shape=point, color="#1c9930", margin="0,0"];\n'
        '\t\t"pplan-a" -> "pplan-a@/out/clean" [label="/out/clean", weight=10, penwidth=0.3];\n'
        '\t\t"pplan-a@log"[shape=point, color="#1c9930", margin="0,0"];\n'
        '\t\t"pplan-a" -> "pplan-a@log" [label="(log)", weight=10, penwidth=0.3];\n'
        "\t}\n"
    )


def cluster_b(id_background):
    return (
        '\tsubgraph { cluster=true; style=solid; penwidth=0.3; color="#DAA520"; margin="0,0";\n'
        '\t\t"pplan-b@/in/clean"[shape=point, color="#1c9930"];\n'
        '\t\t"pplan-b@/in/clean" -> "pplan-b" [label="/in/clean", weight=10, penwidth=0.3];\n'
        '\t\t"pplan-b@/in/log"[shape=point, color="#1c9930"];\n'
        '\t\t"pplan-b@/in/log" -> "pplan-b" [label="/in/log", weight=10, penwidth=0.3];\n'
        '\t\t"pplan-b"[\n'
        "\t\t\tshape=none\n"
        '\t\t\tcolor="#DAA520"\n'
        "\t\t\tlabel=<\n"
        '\t\t\t\t<TABLE CELLSPACING="0">\n'
        '\t\t\t\t\t<TR><TD BGCOLOR="#DAA520"><FONT COLOR="#FFFFFF"><B>Plan</B></FONT></TD><TD><FONT COLOR="gray">inactive</FONT></TD><TD BGCOLOR="'
        + id_background
        + '">id: plan-b</TD></TR>\n'
        '\t\t\t\t\t<TR><TD COLSPAN="3">image = repo.invalid/train:2</TD></TR>\n'
        '\t\t\t\t\t<TR><TD COLSPAN="3"></TD></TR>\n'
        "\t\t\t\t</TABLE>\n"
        "\t\t\t>\n"
        "\t\t];\n"
        '\t\t"pplan-b@/out/model"[shape=point, color="#1c9930", margin="0,0"];\n'
        '\t\t"pplan-b" -> "pplan-b@/out/model" [label="/out/model", weight=10, penwidth=0.3];\n'
        "\t}\n"
    )


PLAN_EDGES = '\t"pplan-a@/out/clean" -> "pplan-b@/in/clean";\n\t"pplan-a@log" -> "pplan-b@/in/log";\n'


def test_plan_graph_from_the_upstream_plan():
    expected = HEAD + cluster_a("#EDD9B4") + cluster_b("#FFFFFF") + "\n" + PLAN_EDGES + "\n}"
    assert plan_graph(PLANS, "plan-a") == expected


def test_plan_graph_from_the_downstream_plan():
    expected = HEAD + cluster_b("#EDD9B4") + cluster_a("#FFFFFF") + "\n" + PLAN_EDGES + "\n}"
    assert plan_graph(PLANS, "plan-b", downstream=False, depth=None) == expected


def test_plan_graph_in_a_direction_with_nothing_there():
    assert plan_graph(PLANS, "plan-a", downstream=False) == HEAD + cluster_a("#EDD9B4") + "\n\n}"


# -- (7) errors and timestamps -------------------------------------------------------------------------


def test_missing_data_is_a_lookup_error():
    with pytest.raises(LookupError) as caught:
        data_lineage(CHAIN, "nope")
    assert str(caught.value) == "data not found: nope"


def test_other_failures_pass_through():
    class Down:
        def get_data(self, knit_id):
            raise ConnectionError("server is down")

    with pytest.raises(ConnectionError, match="server is down"):
        data_lineage(Down(), "data-a")


@pytest.mark.parametrize(
    ("stamp", "local"),
    [
        ("2024-03-06T09:25:16.586+00:00", "2024-03-06T18:25:16.586+09:00"),
        ("2024-03-06T09:25:16.500+00:00", "2024-03-06T18:25:16.5+09:00"),
        ("2024-03-06T09:25:16.0004+00:00", "2024-03-06T18:25:16+09:00"),
        ("2024-03-06T09:25:16.123456789Z", "2024-03-06T18:25:16.123+09:00"),
        ("2024-03-06T23:00:00-05:30", "2024-03-07T13:30:00+09:00"),
    ],
)
def test_local_time_layout(stamp, local):
    assert _local_time(stamp) == local


def test_local_time_with_a_negative_offset(monkeypatch):
    monkeypatch.setenv("TZ", "America/Sao_Paulo")  # -03:00, no daylight saving since 2019
    time.tzset()
    assert _local_time("2024-03-06T09:25:16.999+00:00") == "2024-03-06T06:25:16.999-03:00"
