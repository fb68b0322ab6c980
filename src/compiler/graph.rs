//! The DAG of `needs`: unknown names, cycles (printed as `a -> b -> a`) and a
//! deterministic execution order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

/// A cycle, as node indices in `needs` direction: `[a, b, a]` means `a` needs `b`
/// and `b` needs `a`.
pub(super) type Cycle = Vec<usize>;

/// Builds the petgraph DAG (edge `dep -> node`) and returns a topological order that
/// keeps declaration order wherever the edges allow, or the cycles.
pub(super) fn order(needs: &[Vec<usize>]) -> Result<Vec<usize>, Vec<Cycle>> {
    let mut graph: DiGraph<usize, ()> = DiGraph::with_capacity(needs.len(), needs.len());
    let ids: Vec<NodeIndex> = (0..needs.len()).map(|i| graph.add_node(i)).collect();
    for (node, deps) in needs.iter().enumerate() {
        for &dep in deps {
            graph.add_edge(ids[dep], ids[node], ());
        }
    }

    // Kahn's algorithm with a min-heap on declaration index.
    let mut indegree: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut ready: BinaryHeap<Reverse<usize>> =
        indegree.iter().enumerate().filter(|(_, d)| **d == 0).map(|(i, _)| Reverse(i)).collect();
    let mut order = Vec::with_capacity(needs.len());
    while let Some(Reverse(node)) = ready.pop() {
        order.push(node);
        for next in graph.neighbors(ids[node]) {
            let next = graph[next];
            indegree[next] -= 1;
            if indegree[next] == 0 {
                ready.push(Reverse(next));
            }
        }
    }
    if order.len() == needs.len() {
        return Ok(order);
    }
    Err(cycles(&graph, needs))
}

fn cycles(graph: &DiGraph<usize, ()>, needs: &[Vec<usize>]) -> Vec<Cycle> {
    let mut found = Vec::new();
    for component in tarjan_scc(graph) {
        let members: Vec<usize> = component.iter().map(|&i| graph[i]).collect();
        let is_cycle = members.len() > 1 || needs[members[0]].contains(&members[0]);
        if !is_cycle {
            continue;
        }
        let start = *members.iter().min().expect("a component has members");
        found.push(path_back_to(start, &members, needs));
    }
    found.sort();
    found
}

/// The shortest walk along `needs` from `start` back to itself, inside one component.
fn path_back_to(start: usize, members: &[usize], needs: &[Vec<usize>]) -> Cycle {
    let mut previous: Vec<Option<usize>> = vec![None; needs.len()];
    let mut queue = std::collections::VecDeque::from([start]);
    let mut seen = vec![false; needs.len()];
    seen[start] = true;
    while let Some(node) = queue.pop_front() {
        let mut deps: Vec<usize> = needs[node].iter().copied().filter(|d| members.contains(d)).collect();
        deps.sort();
        for dep in deps {
            if dep == start {
                let mut path = vec![start];
                let mut at = node;
                let mut back = vec![];
                while at != start {
                    back.push(at);
                    at = previous[at].expect("every visited node has a predecessor");
                }
                path.extend(back.into_iter().rev());
                path.push(start);
                return path;
            }
            if !seen[dep] {
                seen[dep] = true;
                previous[dep] = Some(node);
                queue.push_back(dep);
            }
        }
    }
    vec![start, start]
}

/// Whether `ancestor` is reached from `node` by following `needs` (a strict ancestor).
/// `position` is each node's place in the execution order: an ancestor always comes
/// earlier, which prunes the search.
pub(super) fn is_ancestor(ancestor: usize, node: usize, needs: &[Vec<usize>], position: &[usize]) -> bool {
    if position[ancestor] >= position[node] {
        return false;
    }
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![node];
    while let Some(at) = stack.pop() {
        for &dep in &needs[at] {
            if dep == ancestor {
                return true;
            }
            if position[dep] > position[ancestor] && seen.insert(dep) {
                stack.push(dep);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_declaration_order_where_allowed() {
        // 0 needs 2; 1 free; 2 free -> 1, 2, 0
        assert_eq!(order(&[vec![2], vec![], vec![]]).unwrap(), vec![1, 2, 0]);
    }

    #[test]
    fn reports_each_cycle_as_a_closed_walk() {
        // a(0) needs b(1), b needs c(2), c needs a; d(3) needs itself
        let cycles = order(&[vec![1], vec![2], vec![0], vec![3]]).unwrap_err();
        assert_eq!(cycles, vec![vec![0, 1, 2, 0], vec![3, 3]]);
    }

    #[test]
    fn ancestry_follows_needs_transitively() {
        let needs = vec![vec![], vec![0], vec![1], vec![]];
        let order = order(&needs).unwrap();
        let mut position = vec![0; 4];
        for (i, &n) in order.iter().enumerate() {
            position[n] = i;
        }
        assert!(is_ancestor(0, 2, &needs, &position));
        assert!(!is_ancestor(2, 0, &needs, &position));
        assert!(!is_ancestor(3, 2, &needs, &position));
    }
}
