//! A unified diff of two texts, line by line (longest common subsequence; configuration
//! files are small), with three lines of context, as `diff -u` prints it.

const CONTEXT: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Same,
    Del,
    Add,
}

/// The unified diff from `old` (labelled `from`) to `new` (labelled `to`); empty when equal.
/// A missing file is the empty text, labelled `/dev/null`.
pub fn unified(from: &str, to: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = script(&a, &b);

    let mut out = format!("--- {from}\n+++ {to}\n");
    // Positions of each op in a and b.
    let mut pos = Vec::with_capacity(ops.len());
    let (mut i, mut j) = (0, 0);
    for op in &ops {
        pos.push((i, j));
        match op {
            Op::Same => {
                i += 1;
                j += 1;
            }
            Op::Del => i += 1,
            Op::Add => j += 1,
        }
    }
    let mut k = 0;
    while k < ops.len() {
        if ops[k] == Op::Same {
            k += 1;
            continue;
        }
        // A hunk: from CONTEXT before the first change to CONTEXT after the last change
        // that is closer than 2*CONTEXT to the next one.
        let start = k.saturating_sub(CONTEXT);
        let mut end = k;
        loop {
            while end < ops.len() && ops[end] != Op::Same {
                end += 1;
            }
            let mut next = end;
            while next < ops.len() && ops[next] == Op::Same {
                next += 1;
            }
            if next < ops.len() && next - end <= 2 * CONTEXT {
                end = next;
            } else {
                end = (end + CONTEXT).min(ops.len());
                break;
            }
        }
        let (a0, b0) = pos[start];
        let a_len = ops[start..end].iter().filter(|o| **o != Op::Add).count();
        let b_len = ops[start..end].iter().filter(|o| **o != Op::Del).count();
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(a0, a_len),
            range(b0, b_len)
        ));
        for (n, op) in ops[start..end].iter().enumerate() {
            let (ai, bi) = pos[start + n];
            let (mark, line) = match op {
                Op::Same => (' ', a[ai]),
                Op::Del => ('-', a[ai]),
                Op::Add => ('+', b[bi]),
            };
            out.push(mark);
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
        k = end;
    }
    out
}

fn range(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{len}", start + 1),
    }
}

fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push(Op::Same);
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(Op::Add);
            j += 1;
        } else {
            ops.push(Op::Del);
            i += 1;
        }
    }
    // Print deletions before additions within a change, as diff does.
    let mut k = 0;
    while k < ops.len() {
        if ops[k] == Op::Same {
            k += 1;
            continue;
        }
        let s = k;
        while k < ops.len() && ops[k] != Op::Same {
            k += 1;
        }
        ops[s..k].sort_by_key(|o| *o == Op::Add);
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_give_nothing() {
        assert_eq!(unified("a", "b", "x\n", "x\n"), "");
    }

    #[test]
    fn insertion_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let new = "1\n2\n3\n4\n4b\n5\n6\n7\n8\n";
        assert_eq!(
            unified("a/f", "b/f", old, new),
            "--- a/f\n+++ b/f\n@@ -2,6 +2,7 @@\n 2\n 3\n 4\n+4b\n 5\n 6\n 7\n"
        );
    }

    #[test]
    fn replacement_and_distant_hunks() {
        let old: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let new = old.replacen("2\n", "two\n", 1).replace("\n18\n", "\n");
        let d = unified("a", "b", &old, &new);
        assert_eq!(
            d,
            "--- a\n+++ b\n@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n@@ -15,6 +15,5 @@\n 15\n 16\n 17\n-18\n 19\n 20\n"
        );
    }

    #[test]
    fn whole_file_added_or_removed_and_no_final_newline() {
        assert_eq!(
            unified("/dev/null", "b", "", "x\ny"),
            "--- /dev/null\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n\\ No newline at end of file\n"
        );
        assert_eq!(
            unified("a", "/dev/null", "x\n", ""),
            "--- a\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
        );
    }
}
