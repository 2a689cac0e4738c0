using System.Collections.Generic;

namespace VmCheckpoint.Core.Disks.Qcow2
{
    /// <summary>A least-recently-used set of L2 tables, bounded by their total size in bytes.</summary>
    internal sealed class Qcow2L2Cache
    {
        private readonly int _capacity;
        private readonly Dictionary<long, LinkedListNode<KeyValuePair<long, ulong[]>>> _byOffset =
            new Dictionary<long, LinkedListNode<KeyValuePair<long, ulong[]>>>();
        private readonly LinkedList<KeyValuePair<long, ulong[]>> _recency = new LinkedList<KeyValuePair<long, ulong[]>>();

        /// <param name="budgetBytes">Total bytes of tables to keep; at least two tables are always kept.</param>
        public Qcow2L2Cache(int tableBytes, long budgetBytes)
        {
            _capacity = (int)System.Math.Max(2, budgetBytes / tableBytes);
        }

        public int Count => _byOffset.Count;

        public bool TryGet(long offset, out ulong[] table)
        {
            if (_byOffset.TryGetValue(offset, out var node))
            {
                _recency.Remove(node);
                _recency.AddFirst(node);
                table = node.Value.Value;
                return true;
            }

            table = null!;
            return false;
        }

        public void Add(long offset, ulong[] table)
        {
            if (_byOffset.ContainsKey(offset)) return;
            if (_byOffset.Count >= _capacity)
            {
                var oldest = _recency.Last!;
                _recency.RemoveLast();
                _byOffset.Remove(oldest.Value.Key);
            }

            _byOffset[offset] = _recency.AddFirst(new KeyValuePair<long, ulong[]>(offset, table));
        }
    }
}
